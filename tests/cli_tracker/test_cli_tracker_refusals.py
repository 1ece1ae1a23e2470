"""The tracker commands refuse bad paths and plain PODs in one line; every one has --help.

The command runs as a real subprocess (``python -m tastypy``): see _tracker_commands.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from _tracker_commands import (
    _assert_fits,
    _assert_one_line_error,
    _files,
    tastypy_cmd,
)

# -- bad stores -----------------------------------------------------------------------------

READ_AND_RESET = [
    ["status"],
    ["status", "--json"],
    ["status", "--watch"],
    ["list", "--state", "todo"],
    ["reset", "--all"],
    ["reset", "task-00"],
    ["export"],
    ["export", "--format", "jsonl"],
]


@pytest.mark.parametrize("command", READ_AND_RESET, ids=" ".join)
def test_bad_paths_get_one_line_and_exit_2(tmp_path: Path, command: list[str]) -> None:
    name, *rest = command
    missing = tastypy_cmd(name, str(tmp_path / "missing"), *rest)
    _assert_one_line_error(missing, "no such file")
    assert not (tmp_path / "missing").exists()
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    stranger = tastypy_cmd(name, str(folder), *rest)
    _assert_one_line_error(stranger, "not a tastypy store")
    assert _files(folder) == {str(folder / "notes.txt"): b"mine"}
    a_file = tastypy_cmd(name, str(folder / "notes.txt"), *rest)
    _assert_one_line_error(a_file, "not a tastypy store")
    assert _files(folder) == {str(folder / "notes.txt"): b"mine"}


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["status", "--watch", "--json"],
        ["list", "--state", "done"],
        ["reset", "--all"],
        ["reset", "a"],
        ["demo", "--tasks", "5"],
    ],
    ids=" ".join,
)
def test_tracker_commands_refuse_a_plain_pod(pod_store: Path, command: list[str]) -> None:
    name, *rest = command
    before = _files(pod_store)
    done = tastypy_cmd(name, str(pod_store), *rest)
    _assert_one_line_error(done, str(pod_store), "not a tracker")
    assert _files(pod_store) == before


@pytest.mark.parametrize("command", [["import", "FILE"], ["demo", "--tasks", "5"]], ids=" ".join)
def test_writing_commands_leave_a_folder_that_is_not_a_store_alone(
    tmp_path: Path, command: list[str]
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('["a", {"x": 1}]\n')
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    name, *rest = command
    rest = [str(source) if arg == "FILE" else arg for arg in rest]
    done = tastypy_cmd(name, str(folder), *rest)
    _assert_one_line_error(done, str(folder), "not a tastypy store")
    assert _files(folder) == {str(folder / "notes.txt"): b"mine"}


@pytest.mark.parametrize("command", ["status", "list", "reset", "export", "import", "demo"])
def test_help_for_every_tracker_command(command: str) -> None:
    done = tastypy_cmd(command, "--help")
    assert done.returncode == 0
    assert "usage: tastypy" in done.stdout
    _assert_fits(done.stdout)
