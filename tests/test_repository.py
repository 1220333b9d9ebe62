"""The repository stands alone: nothing in it points at folders beside the checkout.

A clean clone has nothing next to it. The project's notes once lived in a sibling folder, and tests that
read from it passed only where that folder happened to exist; the data now lives in tests/data/ and the
design in docs/. These tests keep it so: no file names the sibling folder, and the guard in
tests/conftest.py (reads outside the checkout fail the run) really does fail a run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Spelled in pieces so that this file does not match itself.
SIBLING = "shared"
FORBIDDEN = ("../" + SIBLING, SIBLING + "/protocols", SIBLING + "/design", "/work/" + SIBLING)

# Without git (a copied tree), walk it and skip what .gitignore would.
SKIP_DIRS = {".git", ".venv", ".pytest_cache", ".ruff_cache", ".mypy_cache", ".llmbridge", "__pycache__", "build"}
SKIP_SUFFIXES = (".pyc", ".db", ".db-wal", ".db-shm", ".db-journal")


def repository_files() -> list[Path]:
    """Tracked files plus new ones not ignored (so a file is checked before it is committed)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        listed = None
    if listed is not None:
        return [ROOT / name for name in sorted(set(os.fsdecode(raw) for raw in listed.split(b"\0") if raw))]
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        found += [Path(folder) / name for name in sorted(files) if not name.endswith(SKIP_SUFFIXES)]
    return found


def test_no_file_points_at_folders_beside_the_checkout() -> None:
    files = repository_files()
    assert ROOT / "tests" / "test_repository.py" in files
    offenders = []
    for path in files:
        try:
            text = path.read_bytes().decode()
        except (OSError, UnicodeDecodeError):  # binary, or deleted but still tracked
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if any(needle in line for needle in FORBIDDEN):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, (
        "files point outside the checkout (a clean clone has nothing beside it: copy the data into tests/data/, "
        "replay/ or docs/ and link to that):\n" + "\n".join(offenders)
    )


def test_the_data_the_tests_read_is_in_the_repository() -> None:
    for name in (
        "gemini-codeassist-429-errors.json",
        "gemini-codeassist-nonstream-unwrapped.json",
        "gemini-codeassist-stream-chunks-unwrapped.ndjson",
        "README.md",
    ):
        assert (ROOT / "replay" / "samples" / "gemini-cli" / name).is_file(), name
    assert (ROOT / "docs" / "architecture.md").is_file()


def run_guarded(tmp_path: Path, test_source: str, *pytest_args: str) -> subprocess.CompletedProcess[str]:
    """Runs pytest on one test file in a fake checkout (tmp_path/checkout) guarded by our conftest."""
    checkout = tmp_path / "checkout"
    (checkout / "tests").mkdir(parents=True)
    (checkout / "pytest.ini").write_text("[pytest]\nmarkers =\n    e2e: starts processes\n")
    shutil.copy(ROOT / "tests" / "conftest.py", checkout / "tests" / "conftest.py")
    (checkout / "tests" / "test_reads.py").write_text(textwrap.dedent(test_source))
    (tmp_path / "sibling").mkdir()
    (tmp_path / "sibling" / "sample.json").write_text("{}")
    (tmp_path / ".hidden").write_text("")
    (checkout / "tests" / "inside.json").write_text("{}")
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *pytest_args, "tests"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_guard_fails_a_test_that_reads_beside_the_checkout(tmp_path: Path) -> None:
    done = run_guarded(
        tmp_path,
        """
        import glob
        import os
        from pathlib import Path

        HERE = Path(__file__).parent

        def test_reads_inside_and_allowed_places():
            assert (HERE / "inside.json").read_text() == "{}"
            assert os.listdir(HERE)
            open(HERE.parents[1] / ".hidden").close()  # a dotfile beside the checkout (home directories)
            open(os.__file__, "rb").close()  # the standard library

        def test_reads_a_sibling_folder():
            assert (HERE.parents[1] / "sibling" / "sample.json").read_text() == "{}"

        def test_lists_a_sibling_folder():
            assert os.listdir(os.path.join(HERE, "..", "..", "sibling")) == ["sample.json"]
            assert glob.glob(str(HERE.parents[1] / "sibling" / "*.json"))
    """,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "2 failed, 1 passed" in output, output
    sibling = str(tmp_path / "sibling")
    assert f"{sibling}/sample.json  (by tests/test_reads.py::test_reads_a_sibling_folder)" in output, output
    assert f"{sibling}  (by tests/test_reads.py::test_lists_a_sibling_folder)" in output, output
    assert "READ OUTSIDE THE CHECKOUT" in output
    assert ".hidden" not in output and "inside.json" not in output


def test_guard_fails_the_run_when_a_module_reads_beside_the_checkout_at_import(tmp_path: Path) -> None:
    done = run_guarded(
        tmp_path,
        """
        from pathlib import Path

        SAMPLE = (Path(__file__).parents[2] / "sibling" / "sample.json").read_text()

        def test_passes():
            assert SAMPLE == "{}"
    """,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "1 passed" in output, output
    assert f"{tmp_path / 'sibling' / 'sample.json'}  (by collecting tests/test_reads.py)" in output, output


def test_guard_passes_a_clean_run(tmp_path: Path) -> None:
    done = run_guarded(
        tmp_path,
        """
        from pathlib import Path

        def test_reads_inside():
            assert (Path(__file__).parent / "inside.json").read_text() == "{}"
    """,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "READ OUTSIDE" not in done.stdout


LAYERED = """
    import subprocess
    import sys

    import pytest


    def start_python():
        subprocess.run([sys.executable, "-c", "pass"], check=True)


    class Server:  # like tests/bridge_process.BridgeProcess: the process starts in a method
        def start(self):
            self.process = subprocess.Popen([sys.executable, "-c", "pass"])
            self.process.wait()


    @pytest.fixture
    def server():
        running = Server()
        running.start()
        return running


    def test_in_process():
        assert True


    def test_through_a_helper():
        start_python()


    def test_through_a_fixture(server):
        assert server.process.returncode == 0


    def test_the_rule_cannot_see():
        start = getattr(subprocess, "run")  # hidden from the reading of the code
        start([sys.executable, "-c", "pass"], check=True)
"""


def test_tests_that_start_processes_are_e2e_and_a_missed_one_fails_the_unit_layer(tmp_path: Path) -> None:
    done = run_guarded(tmp_path, LAYERED, "-m", "not e2e")
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "1 failed, 1 passed, 2 deselected" in output, output
    assert "FAILED tests/test_reads.py::test_the_rule_cannot_see" in output, output
    assert "started a process, but is not marked e2e" in output and "subprocess.Popen" in output, output


def test_the_full_run_still_runs_every_layer(tmp_path: Path) -> None:
    done = run_guarded(tmp_path, LAYERED)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "1 failed, 3 passed" in output and "deselected" not in output, output
    assert "FAILED tests/test_reads.py::test_the_rule_cannot_see" in output, output
