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
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
import tempfile
from collections.abc import Generator

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
            if inside.startswith(parent) and inside != parent and not any(
                    inside.startswith(os.path.join(root, "")) for root in _ROOTS):
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
            name = full[len(parent):]
            if name.startswith((".", *temporary)) or (full + os.sep).startswith(folders):
                return None
            return full
    return None


_context = "while collecting"  # who is running: a test's node id, or the module being collected
_pending: list[str] = []  # paths read since the last report
_found: list[tuple[str, str]] = []  # (who, path), for the session summary


def _audit(event: str, args: tuple) -> None:
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
    return (f"read outside the checkout (a clean clone has nothing beside it; copy the data into the "
            f"repository, e.g. tests/data/):\n{listed}")


def pytest_collectstart(collector: pytest.Collector) -> None:
    global _context
    _context = f"collecting {collector.nodeid or collector.name}"


def pytest_runtest_logstart(nodeid: str, location: tuple) -> None:
    global _context
    _context = nodeid
    _pending.clear()  # reads while collecting are reported at the end, not blamed on this test


def pytest_runtest_logfinish(nodeid: str, location: tuple) -> None:
    global _context
    _context = f"after {nodeid}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if _pending:
        message = _describe(_pending)
        _pending.clear()
        if report.failed:
            report.sections.append(("read outside the checkout", message))
        else:
            report.outcome = "failed"
            report.longrepr = message
            if hasattr(report, "wasxfail"):
                del report.wasxfail
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _found and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _found:
        return
    terminalreporter.section("READ OUTSIDE THE CHECKOUT: the run fails", sep="!", red=True, bold=True)
    for who, path in dict.fromkeys(_found):
        terminalreporter.line(f"{path}  (by {who})", red=True)
    terminalreporter.line("A clean clone has nothing beside it: copy what the tests need into the repository "
                          "(e.g. tests/data/) and read it relative to the test file.", red=True)


@pytest.fixture(autouse=True)
def _isolated_bridge_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the user's llmbridge home, or the checkout's own bridge.toml and
    recordings/: the home (where the config and default database are looked for) is a fresh folder."""
    monkeypatch.setenv("LLMBRIDGE_HOME", str(tmp_path_factory.mktemp("llmbridge-home")))
    monkeypatch.delenv("LLMBRIDGE_CONFIG", raising=False)
