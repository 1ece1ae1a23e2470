"""Regressions from a hostile review of the ``tastypy`` command line.

Each test reproduces one finding through ``tastypy.cli.main([...])`` or a
real ``python -m tastypy`` subprocess, and asserts what the command must do
instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import tastypy
from tastypy.cli import main

from _subproc import Child

WAIT = 30.0


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def tastypy_cmd(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tastypy", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        **kwargs,
    )


def _mk(path: Path, n: int = 300, file_size: int = 100) -> Path:
    """The review's store: *n* records ``k{i}: {"v": i}``, *file_size* per data file."""
    with tastypy.POD(path, file_size=file_size) as pod:
        for i in range(n):
            pod[f"k{i}"] = {"v": i}
    return path


def _items(path: Path) -> dict[str, Any]:
    with tastypy.POD(path, readonly=True) as pod:
        return dict(pod.items())


# -- 1. reset decides which tasks to reset once it holds the store ---------------------


def test_reset_failed_with_timeout_leaves_tasks_finished_while_it_waited(
    tmp_path: Path,
) -> None:
    path = tmp_path / "r.tracker"
    with tastypy.Tracker(path) as tracker:
        tracker.add_many(f"t{i}" for i in range(10))
    job = """
        import sys, tastypy
        t = tastypy.Tracker(sys.argv[1])
        for i in range(5):
            t.try_it(f"t{i}")
        print("ready", flush=True)
        sys.stdin.readline()
        for i in range(5):
            t.mark_done(f"t{i}")
            t[f"t{i}"]["result"] = i
        t.close()
        print("closed", flush=True)
    """
    with Child(job, str(path)) as child:
        child.expect("ready")
        reset = subprocess.Popen(
            [sys.executable, "-m", "tastypy", "reset", str(path), "--failed", "--timeout", "20"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # Give the reset the time to read the store and start waiting for the
        # lock (the bug picked its tasks then); the assertions do not depend on it.
        time.sleep(1.5)
        child.send("go")
        child.expect("closed")
        out, err = reset.communicate(timeout=WAIT)
    assert reset.returncode == 0, err
    assert "reset 0 tasks" in out
    with tastypy.Tracker(path, readonly=True) as tracker:
        assert [tracker.check(f"t{i}") for i in range(5)] == [True] * 5
        assert [tracker[f"t{i}"]["result"] for i in range(5)] == list(range(5))


def test_reset_counts_a_key_given_twice_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.tracker"
    with tastypy.Tracker(path) as tracker:
        tracker.add_many(["a", "b"])
    status, out, _ = _cli(capsys, "reset", str(path), "a", "a")
    assert status == 0
    assert "reset 1 task" in out and "tasks" not in out


# -- 3. integers beyond 64 bits in a JSON-lines import ------------------------------------


def test_jsonl_import_refuses_an_integer_beyond_64_bits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "big.jsonl"
    data.write_text('["a", 1]\n["b", 123456789012345678901234567890]\n')
    status, _out, err = _cli(capsys, "import", str(tmp_path / "n.pod"), str(data))
    assert status == 2
    assert f"{data}:2:" in err and "'b'" in err and "nothing was imported" in err
    assert not (tmp_path / "n.pod").exists()


def test_jsonl_import_keeps_long_digit_strings_and_64_bit_integers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "ok.jsonl"
    data.write_text('["a", "123456789012345678901234567890"]\n["b", -9223372036854775808]\n')
    status, _, err = _cli(capsys, "import", str(tmp_path / "n.pod"), str(data))
    assert status == 0, err
    assert _items(tmp_path / "n.pod") == {
        "a": "123456789012345678901234567890",
        "b": -9223372036854775808,
    }


# -- 4. deeply nested JSON: one line, exit 2 ------------------------------------------------


def test_set_deeply_nested_value_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _mk(tmp_path / "s.pod", n=3)
    status, _, err = _cli(capsys, "set", str(path), "k", "[" * 1500 + "]" * 1500)
    assert status == 2
    assert err.count("\n") == 1 and "Traceback" not in err and "nested" in err
    assert "k" not in _items(path)


@pytest.mark.parametrize(
    "text",
    ['{"a": ' + "[" * 1500 + "]" * 1500 + "}", '{"a": 1, "b": ' + "[" * 1500 + "]" * 1500 + "}"],
)
def test_import_deeply_nested_object_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    data = tmp_path / "deep.json"
    data.write_text(text)
    status, _, err = _cli(capsys, "import", str(tmp_path / "n.pod"), str(data))
    assert status == 2
    assert err.count("\n") == 1 and "nested" in err and str(data) in err
    assert not (tmp_path / "n.pod").exists()


def test_import_deeply_nested_lines_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "deep.jsonl"
    data.write_text('["a", ' + "[" * 1500 + "]" * 1500 + "]\n")
    status, _, err = _cli(capsys, "import", str(tmp_path / "n.pod"), str(data))
    assert status == 2
    assert err.count("\n") == 1 and f"{data}:1:" in err
    assert not (tmp_path / "n.pod").exists()


# -- 9. a closed pipe is not success ------------------------------------------------------


def _damage(path: Path) -> None:
    chunk = sorted((path / "chunks").iterdir())[1]
    os.truncate(chunk, 1000)


@pytest.mark.parametrize("command", ["verify", "keys", "repair"])
def test_a_closed_pipe_gives_141_not_0(tmp_path: Path, command: str) -> None:
    path = _mk(tmp_path / "s.pod")
    if command != "keys":
        _damage(path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tastypy", command, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # like `| head -0`: the reader is gone before anything is written
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=WAIT) == 141
    assert "Traceback" not in err and "Exception ignored" not in err


# -- 10. errors writing the output name the output --------------------------------------


@pytest.mark.parametrize("command", ["export", "keys"])
def test_a_full_stdout_is_blamed_on_stdout_not_the_store(tmp_path: Path, command: str) -> None:
    path = _mk(tmp_path / "s.pod", n=3000)
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "tastypy", command, str(path)],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    assert proc.returncode == 3
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "standard output" in proc.stderr and "ENOSPC" in proc.stderr
    assert str(path) not in proc.stderr


# -- 11. export -o /dev/stdout when stdout is a pipe ---------------------------------------


def test_export_to_dev_stdout_through_a_pipe(tmp_path: Path) -> None:
    path = _mk(tmp_path / "s.pod", n=3)
    proc = tastypy_cmd("export", str(path), "-o", "/dev/stdout", "--format", "jsonl")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f'["k{i}",{{"v":{i}}}]' for i in range(3)]


# -- 12. verify escapes line breaks in a path ----------------------------------------------


@pytest.mark.parametrize("sep", ["\n", "\u2028", "\x85"])
def test_verify_escapes_line_breaks_in_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sep: str
) -> None:
    path = _mk(tmp_path / f"a{sep}b.pod", n=3)
    status, out, _ = _cli(capsys, "verify", str(path))
    assert status == 0
    assert out.count("\n") == 1 and sep not in out.rstrip("\n")
    assert ascii(sep)[1:-1] in out


# -- 15. Ctrl-C: one line, exit 130 -----------------------------------------------------------


def test_ctrl_c_during_import_is_one_line_and_130(tmp_path: Path) -> None:
    fifo = tmp_path / "data.json"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tastypy", "import", str(tmp_path / "n.pod"), str(fifo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with open(fifo, "w") as writer:  # returns once the command has opened it: it waits to read
        writer.write('{"a": ')
        writer.flush()
        proc.send_signal(2)
        _out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 130
    assert err.count("\n") == 1 and "Traceback" not in err and "interrupted" in err
    assert not (tmp_path / "n.pod").exists()
