"""Guard: the suite must not read anything beside the checkout (a sibling folder such as `../notes/`).

A clean clone has nothing next to it, so a test that reads a sibling folder passes where that folder
happens to exist (a developer's machine, CI) and fails everywhere else. An audit hook (`sys.addaudithook`)
sees every `open`, `os.listdir`, `os.scandir` and `glob.glob` in this process and records paths that fall
in the checkout's parent directory but outside the checkout. A test that read such a path fails, and the
run ends with a non-zero status listing every path and who read it (a test, or a module while collected).

Not reported: the interpreter, its site-packages and the temporary directory when they sit beside the
checkout, temporary files (`tmp*`, `pytest-of-*`) when the checkout sits right in the temporary directory,
and hidden entries of the parent (`../.cache`, `../.config`: with a checkout in a home directory, libraries
read their dotfiles). Subprocesses are not audited; tests/test_repository.py catches paths to sibling
folders written into files. Audit hooks cannot be removed, so the hook does only string work.

Layers: tests that start processes (the real bridge, `llmbridge` or `mitmdump`, a nested pytest, git, Chromium)
are marked `e2e` at collection, so `scripts/test -m "not e2e and not browser"` runs the in-process unit layer in
seconds while `scripts/test` runs everything. The mark is decided from the code: every test in a
`test_e2e_*.py` file, and any test whose function, fixtures, or the helpers under tests/ they use (followed
through calls and classes, such as `BridgeProcess`) refer to a function that starts a process (`subprocess.*`,
`os.system`/`exec*`/`spawn*`/`fork`, `asyncio.create_subprocess_*`). The same audit hook checks the rule: a test
that starts a process (a `subprocess.Popen`, `os.exec`, `os.fork`... event) without the `e2e` mark fails,
so a test the rule misses shows up in the fast layer at once instead of making it slow.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import fnmatch
import inspect
import os
import site
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import types
from collections.abc import Generator, Iterator

import pytest

_WATCHED = frozenset({"open", "os.listdir", "os.scandir", "glob.glob", "glob.glob/2"})


def _variants(path: str) -> set[str]:
    return {os.path.abspath(path), os.path.realpath(path)}


_ROOTS = tuple(sorted(_variants(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))


def _exemptions(parent: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Places in the parent that may be read: (folders, e.g. a virtualenv beside the checkout; names of
    temporary files, when the checkout sits right in the temporary directory)."""
    places = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, tempfile.gettempdir()]
    places += [path for path in sysconfig.get_paths().values() if path]
    try:
        places += [*site.getsitepackages(), site.getusersitepackages()]
    except AttributeError:  # a virtualenv's old site.py
        pass
    folders: set[str] = set()
    for place in places:
        for variant in _variants(place):
            inside = os.path.join(variant, "")
            # Only folders strictly inside the parent: one that holds the parent (/tmp for a checkout in
            # /tmp/x/) would exempt every sibling.
            if (
                inside.startswith(parent)
                and inside != parent
                and not any(inside.startswith(os.path.join(root, "")) for root in _ROOTS)
            ):
                folders.add(inside)
    in_temporary = parent in {os.path.join(variant, "") for variant in _variants(tempfile.gettempdir())}
    temporary = ("tmp", "pytest-of-") if in_temporary else ()  # tempfile's and pytest's names
    return tuple(sorted(folders)), temporary


# (parent + sep, checkout, checkout + sep, exempt folders, exempt temporary names); a checkout at the
# filesystem root has no outside to guard.
_GUARDED = tuple(
    (parent, root, os.path.join(root, ""), *_exemptions(parent))
    for root in _ROOTS
    if os.path.dirname(root) != os.path.dirname(os.path.dirname(root))
    for parent in [os.path.join(os.path.dirname(root), "")]
)


def outside_checkout(path: object) -> str | None:
    """The absolute path if `path` is in the checkout's parent directory but not in the checkout."""
    if isinstance(path, os.PathLike):
        path = path.__fspath__()
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str):  # a file descriptor, or None (os.listdir() of the working directory)
        return None
    full = os.path.abspath(path)
    for parent, root, root_sep, folders, temporary in _GUARDED:
        if full.startswith(parent) and full != root and not full.startswith(root_sep):
            name = full[len(parent) :]
            if name.startswith((".", *temporary)) or (full + os.sep).startswith(folders):
                return None
            return full
    return None


_context = "while collecting"  # who is running: a test's node id, or the module being collected
_pending: list[str] = []  # paths read since the last report
_found: list[tuple[str, str]] = []  # (who, path), for the session summary


# Audit events that start a process (subprocess, os.system/exec*/spawn*/posix_spawn*, os.fork/forkpty).
_STARTS = frozenset({"subprocess.Popen", "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty"})
_started: list[str] = []  # processes started since the current test began


def _audit(event: str, args: tuple) -> None:
    if event in _STARTS:
        try:
            command = args[1] if event == "subprocess.Popen" else args[0] if args else ""
            _started.append(f"{event}: {command!r}"[:300])
        except Exception:
            _started.append(event)
        return
    if event not in _WATCHED:
        return
    try:
        path = args[0]
        if event == "glob.glob/2" and args[2] is not None:
            path = os.path.join(os.fsdecode(args[2]), os.fsdecode(path))
        full = outside_checkout(path)
    except Exception:  # an audit hook that raises would break the caller's open()
        return
    if full is not None:
        _pending.append(full)
        _found.append((_context, full))


sys.addaudithook(_audit)


def _describe(paths: list[str]) -> str:
    listed = "\n".join(f"    {path}" for path in dict.fromkeys(paths))
    return (
        f"read outside the checkout (a clean clone has nothing beside it; copy the data into the "
        f"repository, e.g. tests/data/):\n{listed}"
    )


def pytest_collectstart(collector: pytest.Collector) -> None:
    global _context
    _context = f"collecting {collector.nodeid or collector.name}"


def pytest_runtest_logstart(nodeid: str, location: tuple) -> None:
    global _context
    _context = nodeid
    _pending.clear()  # reads while collecting are reported at the end, not blamed on this test
    _started.clear()


def pytest_runtest_logfinish(nodeid: str, location: tuple) -> None:
    global _context
    _context = f"after {nodeid}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if _pending:
        _fail(report, "read outside the checkout", _describe(_pending))
        _pending.clear()
    if _started and item.get_closest_marker("e2e") is None:
        _fail(report, "started a process without the e2e mark", _describe_started(_started))
        _started.clear()
    return report


def _fail(report: pytest.TestReport, title: str, message: str) -> None:
    if report.failed:
        report.sections.append((title, message))
    else:
        report.outcome = "failed"
        report.longrepr = message
        if hasattr(report, "wasxfail"):
            del report.wasxfail


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _found and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _found:
        return
    terminalreporter.section("READ OUTSIDE THE CHECKOUT: the run fails", sep="!", red=True, bold=True)
    for who, path in dict.fromkeys(_found):
        terminalreporter.line(f"{path}  (by {who})", red=True)
    terminalreporter.line(
        "A clean clone has nothing beside it: copy what the tests need into the repository "
        "(e.g. tests/data/) and read it relative to the test file.",
        red=True,
    )


@pytest.fixture(autouse=True)
def _isolated_bridge_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the user's llmbridge home, or the checkout's own bridge.toml and
    recordings/: the home (where the config and default database are looked for) is a fresh folder."""
    monkeypatch.setenv("LLMBRIDGE_HOME", str(tmp_path_factory.mktemp("llmbridge-home")))
    monkeypatch.delenv("LLMBRIDGE_CONFIG", raising=False)


# --- test layers: `e2e` for tests that start processes ---------------------------------------------------------

_TESTS = os.path.dirname(os.path.abspath(__file__))
E2E_MODULES = ("test_e2e_*.py",)  # whole files: the end-to-end suites


def _starters() -> frozenset[object]:
    names = {
        subprocess: ("Popen", "run", "call", "check_call", "check_output", "getoutput", "getstatusoutput"),
        asyncio: ("create_subprocess_exec", "create_subprocess_shell"),
        os: (
            "system",
            "popen",
            "fork",
            "forkpty",
            "posix_spawn",
            "posix_spawnp",
            "execl",
            "execle",
            "execlp",
            "execlpe",
            "execv",
            "execve",
            "execvp",
            "execvpe",
            "spawnl",
            "spawnle",
            "spawnlp",
            "spawnlpe",
            "spawnv",
            "spawnve",
            "spawnvp",
            "spawnvpe",
        ),
    }
    return frozenset(
        getattr(module, name) for module, listed in names.items() for name in listed if hasattr(module, name)
    )


_STARTERS = _starters()
_UNKNOWN = object()


def _describe_started(started: list[str]) -> str:
    listed = "\n".join(f"    {command}" for command in dict.fromkeys(started))
    return (
        "started a process, but is not marked e2e, so it would run (slowly) in the unit layer "
        '(`-m "not e2e"`). The rule in tests/conftest.py did not see where it starts one: mark the test '
        f"`@pytest.mark.e2e` (or the file `pytestmark = pytest.mark.e2e`).\n{listed}"
    )


def _references(tree: ast.AST) -> Iterator[ast.Name | ast.Attribute]:
    """Names and attributes read in `tree`, annotations left out (naming a type starts nothing)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Name | ast.Attribute) and isinstance(node.ctx, ast.Load):
            yield node
        for field, value in ast.iter_fields(node):
            if field in ("annotation", "returns"):
                continue
            if isinstance(value, ast.AST):
                stack.append(value)
            elif isinstance(value, list):
                stack.extend(child for child in value if isinstance(child, ast.AST))


def _resolve(node: ast.expr, namespace: dict[str, object]) -> object:
    """The object a name or dotted name refers to in a module's namespace, or _UNKNOWN (a local, `self.x`)."""
    if isinstance(node, ast.Name):
        return namespace.get(node.id, getattr(builtins, node.id, _UNKNOWN))
    if isinstance(node, ast.Attribute):
        base = _resolve(node.value, namespace)
        if isinstance(base, types.ModuleType | type):
            try:
                return getattr(base, node.attr, _UNKNOWN)
            except Exception:
                return _UNKNOWN
    return _UNKNOWN


class _ProcessFinder:
    """Reads source code to decide whether using an object may start a process: a process-starting function
    itself, or a function or class under tests/ whose code refers to one (followed through helpers)."""

    def __init__(self) -> None:
        self._seen: dict[object, bool] = {}

    def starts_process(self, obj: object) -> bool:
        try:
            if obj in _STARTERS:
                return True
        except TypeError:  # unhashable: data, not code
            return False
        if not self._under_tests(obj):
            return False
        if obj not in self._seen:
            self._seen[obj] = False  # while reading it: recursion ends here
            self._seen[obj] = any(self._code_starts(function) for function in self._functions(obj))
        return self._seen[obj]

    @staticmethod
    def _under_tests(obj: object) -> bool:
        if not isinstance(obj, types.FunctionType | type):
            return False
        try:
            path = inspect.getsourcefile(obj)
        except TypeError:
            return False
        return path is not None and os.path.abspath(path).startswith(os.path.join(_TESTS, ""))

    @staticmethod
    def _functions(obj: object) -> list[types.FunctionType]:
        if isinstance(obj, types.FunctionType):
            return [obj]
        found = []
        for member in vars(obj).values():
            if isinstance(member, staticmethod | classmethod):
                member = member.__func__
            parts = (member.fget, member.fset, member.fdel) if isinstance(member, property) else (member,)
            found += [inspect.unwrap(part) for part in parts if isinstance(part, types.FunctionType)]
        return found

    def _code_starts(self, function: types.FunctionType) -> bool:
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
        except (OSError, TypeError, SyntaxError):  # generated code (dataclass __init__), a lambda mid-line
            return False
        namespace = function.__globals__
        return any(self.starts_process(_resolve(node, namespace)) for node in _references(tree))


def _starts_processes(item: pytest.Item, finder: _ProcessFinder) -> bool:
    """Whether the test, or a fixture it uses that is defined in its module or here, starts a process."""
    if any(fnmatch.fnmatch(item.path.name, pattern) for pattern in E2E_MODULES):
        return True
    function = getattr(getattr(item, "obj", None), "__func__", getattr(item, "obj", None))
    used: list[object] = [function]
    module = getattr(item, "module", None)
    for name in getattr(item, "fixturenames", ()):
        for namespace in (vars(module) if module is not None else {}, globals()):
            if callable(fixture := namespace.get(name)):
                used.append(inspect.unwrap(fixture))
    return any(finder.starts_process(obj) for obj in used)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    finder = _ProcessFinder()
    for item in items:
        if item.get_closest_marker("e2e") is None and _starts_processes(item, finder):
            item.add_marker(pytest.mark.e2e)
