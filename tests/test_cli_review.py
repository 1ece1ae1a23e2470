"""Regressions from a hostile review of the ``tastypy`` command line.

Each test reproduces one finding through ``tastypy.cli.main([...])`` or a
real ``python -m tastypy`` subprocess, and asserts what the command must do
instead.
"""

from __future__ import annotations

import os
import shutil
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
    # Closing our end lets a read that began just after the signal came
    # return, so the interpreter acts on the signal even then.
    _out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 130
    assert err.count("\n") == 1 and "Traceback" not in err and "interrupted" in err
    assert not (tmp_path / "n.pod").exists()


# -- 2. intact records win over unchecked lines -------------------------------------------


def _edit_line(path: Path, index: int, line: int, old: str, new: str) -> None:
    chunk = sorted((path / "chunks").iterdir())[index]
    lines = chunk.read_text().split("\n")
    assert old in lines[line - 1]
    lines[line - 1] = lines[line - 1].replace(old, new)
    chunk.write_text("\n".join(lines))


@pytest.mark.parametrize("missing", [False, True])
def test_accept_edits_never_overwrites_an_intact_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], missing: bool
) -> None:
    path = _mk(tmp_path / "s.pod")
    _edit_line(path, 0, 51, '"k50",{"v":50}', '"k150",{"v":999}')
    if missing:
        sorted((path / "chunks").iterdir())[2].unlink()
    status, out, _ = _cli(capsys, "repair", str(path), "--accept-edits", "--all")
    assert status == 1
    saved = _items(tmp_path / "s.pod.repaired")
    assert saved["k150"] == {"v": 150}  # the intact one
    assert "k50" not in saved and saved["k49"] == {"v": 49}
    assert "chunks/00000001-000001.jsonl:51 'k150'" not in out
    assert "'k150': not taken: an intact data file holds this key" in out


# -- 5. unusable _tries: repair fixes it to the default, verify lists every one ------------


def _bad_tries_tracker(tmp_path: Path) -> Path:
    path = tmp_path / "b.tracker"
    with tastypy.Tracker(path) as tracker:
        tracker.add_many(f"k{i}" for i in range(5))
    with tastypy.POD(path) as pod:
        pod["k2"]["_tries"] = "3"
        pod["k4"]["_tries"] = -1
    return path


def test_verify_names_every_unusable_tries(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _bad_tries_tracker(tmp_path)
    status, out, _ = _cli(capsys, "verify", str(path))
    assert status == 1
    assert "'k2'" in out and "'k4'" in out


@pytest.mark.parametrize("in_place", [False, True])
def test_repair_resets_an_unusable_tries_to_0_and_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], in_place: bool
) -> None:
    path = _bad_tries_tracker(tmp_path)
    args = ["repair", str(path)] + (["--in-place"] if in_place else [])
    status, out, err = _cli(capsys, *args)
    assert status == 1, err
    assert "'k2'" in out and "'k4'" in out and "_tries" in out
    fixed = path if in_place else tmp_path / "b.tracker.repaired"
    assert tastypy.verify(fixed).ok
    with tastypy.Tracker(fixed, readonly=True) as tracker:
        assert len(tracker) == 5
        assert tracker.tries("k2") == 0 and tracker.tries("k4") == 0


# -- 6. the counts are records ----------------------------------------------------------------


def test_a_truncated_data_file_counts_its_records_as_lost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _mk(tmp_path / "c.pod")
    _damage(path)
    report = tastypy.verify(path)
    assert report.records == 200 and report.lost == 100
    _, out, _ = _cli(capsys, "verify", str(path))
    assert "200 records intact, 100 records lost" in out
    status, out, _ = _cli(capsys, "repair", str(path))
    assert status == 1
    assert "saved 200 records" in out and "100 records NOT saved" in out


def test_a_gzipped_data_file_with_one_flipped_byte_loses_its_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "g.pod"
    with tastypy.POD(path, file_size=100, gzipped=True) as pod:
        for i in range(300):
            pod[f"k{i}"] = {"v": i}
    chunk = sorted((path / "chunks").iterdir())[1]
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    report = tastypy.verify(path)
    assert report.records == 200 and report.lost == 100


def test_tries_rebuilt_records_are_counted_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.tracker"
    with tastypy.Tracker(path, file_size=10) as tracker:
        tracker.add_many(f"k{i:02d}" for i in range(30))
    tracker = tastypy.Tracker(path, sync_at=10**6)
    for i in range(10, 15):
        tracker.try_it(f"k{i:02d}")  # logged in tries.jsonl, not synced
    snapshot = tmp_path / "copy.tracker"
    shutil.copytree(path, snapshot)
    tracker.close()
    (snapshot / "lock").unlink()
    os.truncate(sorted((snapshot / "chunks").iterdir())[1], 0)
    report = tastypy.verify(snapshot)
    assert report.records == 25 and report.lost == 5
    status, out, _ = _cli(capsys, "repair", str(snapshot), "--all")
    assert status == 1
    assert "saved 25 records" in out and "5 records NOT saved" in out
    assert out.count("rebuilt from") == 5


# -- 8. repair . --in-place from inside the store ----------------------------------------


def test_repair_dot_in_place_from_inside_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _mk(tmp_path / "s.pod")
    _damage(path)
    monkeypatch.chdir(path)
    status, _out, err = _cli(capsys, "repair", ".", "--in-place")
    assert status == 1, err
    monkeypatch.chdir(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.pod", "s.pod.damaged"]
    assert len(_items(path)) == 200
    assert not tastypy.verify(tmp_path / "s.pod.damaged").ok


# -- 7. a repair killed midway leaves no half-made store under a final name -------------

_KILL_AT_RENAME = """
import os, signal, sys
from tastypy.storage.files import _fs
from tastypy.cli import main

calls = 0
real = _fs.replace

def replace(src, dst):
    global calls
    calls += 1
    if calls == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst)

_fs.replace = replace
sys.exit(main(["repair", sys.argv[1], *sys.argv[3:]]))
"""


@pytest.mark.parametrize("in_place", [False, True])
def test_a_repair_killed_at_any_rename_leaves_no_half_made_store(
    tmp_path: Path, in_place: bool
) -> None:
    original = _mk(tmp_path / "orig.pod")
    _damage(original)
    extra = ["--in-place"] if in_place else []
    for n in range(1, 20):
        case = tmp_path / f"case{n}"
        case.mkdir()
        path = case / "s.pod"

        shutil.copytree(original, path)
        proc = subprocess.run(
            [sys.executable, "-c", _KILL_AT_RENAME, str(path), str(n), *extra],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        killed = proc.returncode == -9
        assert killed or proc.returncode == 1, proc.stderr
        # Every store under a final name is whole: the original (damaged) or the salvage.
        for name in ("s.pod", "s.pod.repaired", "s.pod.damaged"):
            if (case / name).exists():
                report = tastypy.verify(case / name)
                assert report.ok == (report.records == 200 and report.lost == 0), (n, name)
                assert report.records == 200, (n, name, str(report))
        if not killed:
            break
        if not (case / "s.pod.repaired").exists() and (case / "s.pod").exists():
            rerun = tastypy_cmd("repair", str(path), *extra)
            assert rerun.returncode == 1, rerun.stderr
            assert "removed" in rerun.stdout or not any(
                p.name.startswith(".s.pod") for p in case.iterdir()
            )
            assert not any(".repairing" in p.name for p in case.iterdir())
    else:
        pytest.fail("the repair never finished")
    assert n > 3  # it was killed at several renames before finishing


# -- 13. repair on a full disk: exit 3, one line, nothing left ------------------------------


def test_repair_on_a_disk_that_fills_midway_is_one_line_exit_3(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from _smallfs import fill, small_filesystem

    with small_filesystem(1 << 20) as root:
        path = _mk(root / "s.pod")
        _damage(path)
        filler = fill(root)
        size = filler.stat().st_size
        failures = 0
        for room in range(0, 400_000, 8192):  # free a little more space each round
            os.truncate(filler, size - room)
            status, _out, err = _cli(capsys, "repair", str(path), "-o", str(root / "fixed.pod"))
            if status == 1:
                break
            failures += 1
            assert status == 3, err
            assert err.count("\n") == 1 and "ENOSPC" in err and "warning" not in err, err
            assert "fixed.pod" in err and ".repairing" not in err
            assert sorted(p.name for p in root.iterdir()) == ["filler.bin", "s.pod"]
        else:
            pytest.fail("the repair never found room")
        assert failures > 1
        assert tastypy.verify(root / "fixed.pod").records == 200


# -- 14. a failed import into an empty directory leaves it empty ------------------------------


def test_a_failed_import_into_an_empty_directory_leaves_it_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "e.pod"
    target.mkdir()
    data = tmp_path / "bad.json"
    data.write_text('{"a": 1, "b": NaN}')
    status, _, err = _cli(capsys, "import", str(target), str(data))
    assert status == 2, err
    assert target.is_dir() and list(target.iterdir()) == []


# -- 16. small rough edges ----------------------------------------------------------------


def test_import_refuses_a_key_given_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "dup.json"
    data.write_text('{"a": 1,\n "a": 2}')
    status, _, err = _cli(capsys, "import", str(tmp_path / "n.pod"), str(data))
    assert status == 2
    assert f"{data}:2:" in err and "'a'" in err and "twice" in err
    assert not (tmp_path / "n.pod").exists()


def test_an_empty_key_is_shown_as_a_literal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.pod"
    with tastypy.POD(path) as pod:
        pod[""] = 1
        pod["x"] = 2
    status, out, _ = _cli(capsys, "keys", str(path))
    assert status == 0 and out.splitlines() == ["''", "x"]


def test_jsonl_import_refuses_a_key_given_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "dup.jsonl"
    data.write_text('["a", 1]\n["b", 1]\n["a", 2]\n')
    status, _, err = _cli(capsys, "import", str(tmp_path / "n.pod"), str(data))
    assert status == 2
    assert f"{data}:3:" in err and "'a'" in err and "line 1" in err


def test_a_timeout_that_ran_out_advises_a_longer_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _mk(tmp_path / "s.pod", n=3)
    holder = """
        import sys, tastypy
        p = tastypy.POD(sys.argv[1])
        print("ready", flush=True)
        sys.stdin.readline()
    """
    with Child(holder, str(path)) as child:
        child.expect("ready")
        status, _, err = _cli(capsys, "compact", str(path), "--timeout", "0.2")
        child.send("go")
    assert status == 2
    assert "give a longer --timeout SECONDS" in err and "add --timeout" not in err


def test_repair_in_place_through_a_link_repairs_the_store_it_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = _mk(tmp_path / "real.pod")
    _damage(real)
    link = tmp_path / "link.pod"
    link.symlink_to(real)
    status, _, err = _cli(capsys, "repair", str(link), "--in-place")
    assert status == 1, err
    assert link.is_symlink() and link.resolve() == real
    assert len(_items(real)) == 200 and tastypy.verify(real).ok
    assert not tastypy.verify(tmp_path / "real.pod.damaged").ok
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "link.pod",
        "real.pod",
        "real.pod.damaged",
    ]
