"""The ``tastypy`` command in a hostile world: it never prints a traceback.

Writing commands on a real read-only filesystem, a real full one and a
directory without write permission; terminals that cannot encode the keys;
keys and values full of control characters and wide characters; a store
held by another process. Every command runs as a real subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tastypy

from _smallfs import fill, remount_readonly, small_filesystem
from _subproc import Child

WAIT = 60.0

KEYS = [
    "plain",
    "ünï",
    "漢字のキー",
    "new\nline",
    "\x1b[31mred",
    "c1\x9b31mcsi",
    "del\x7f",
    "sep\u2028x",
    "'quoted",
    "tab\there",
]


def tastypy_cmd(
    *args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[bytes]:
    """``python -m tastypy ARGS``; output as bytes (the test decodes what it expects)."""
    base = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    return subprocess.run(
        [*prefix, sys.executable, "-m", "tastypy", *args],
        capture_output=True,
        timeout=WAIT,
        check=False,
        env={**base, **(env or {})},
    )


def _files(path: Path) -> dict[str, bytes]:
    if path.is_file():
        return {str(path): path.read_bytes()}
    return {str(p): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _one_line_error(done: subprocess.CompletedProcess[bytes], status: int, *words: str) -> str:
    err = done.stderr.decode("ascii", errors="replace")
    assert done.returncode == status, (done.returncode, done.stdout, err)
    assert "Traceback" not in err, err
    assert err.startswith("tastypy: error: "), err
    assert err.count("\n") == 1, err
    for word in words:
        assert word in err, (word, err)
    return err


def _make_tracker(path: Path) -> None:
    with tastypy.Tracker(path, max_tries=3) as tracker:
        tracker.add_many(KEYS)
        tracker.try_it("plain")
        tracker.mark_done("ünï")
        tracker["new\nline"]["note"] = "value with \x1b[2J and \x9b and \u2028"
        tracker.try_it("\x1b[31mred")
        tracker["\x1b[31mred"]["_errors"] = [
            {"type": "ValueError", "message": "\x1b[31mboom\nsecond line", "at": ""}
        ]


def _with_journal(path: Path) -> None:
    """A POD whose last sync is still in the journal (no compaction at close)."""
    code = """
        import os, sys
        import tastypy
        pod = tastypy.POD(sys.argv[1])
        pod["late"] = {"x": "y" * 2000}
        pod.sync()
        os._exit(0)
    """
    with tastypy.POD(path) as pod:
        pod.update((f"k{i}", i) for i in range(50))
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(path)], timeout=WAIT, check=False
    )
    assert done.returncode == 0
    assert any(p.stat().st_size for p in path.glob("journal-*"))


def _items(path: Path) -> list[tuple[str, Any]]:
    with tastypy.POD(path, readonly=True) as pod:
        return list(pod.items())


# -- writing commands where the OS refuses ------------------------------------------------

# (command, what it writes to): PATH is the existing store, NEW a path for a new
# store, IN an import file, OUT the export target (which exists beforehand).
WRITING = {
    "compact": ["compact", "POD"],
    "reset": ["reset", "TRACKER", "--all"],
    "import into a store": ["import", "POD", "IN"],
    "import into a new store": ["import", "NEW", "IN"],
    "import into a new tracker's parents": ["import", "NEW/deeper/x.pod", "IN"],
    "export -o a new file": ["export", "POD", "-o", "NEWFILE"],
    "export -o an old file": ["export", "POD", "-o", "OUT"],
    "demo": ["demo", "NEW", "--tasks", "20", "--workers", "1"],
}


@pytest.fixture
def small_root() -> Iterator[Path]:
    with small_filesystem(4 << 20) as root:
        yield root


def _layout(root: Path, source: Path) -> dict[str, Path]:
    """The stores and files a WRITING command names, made under *root*."""
    paths = {
        "POD": root / "data.pod",
        "TRACKER": root / "jobs.tracker",
        "NEW": root / "new.store",
        "IN": source,
        "OUT": root / "old.json",
        "NEWFILE": root / "new.json",
    }
    _with_journal(paths["POD"])
    _make_tracker(paths["TRACKER"])
    paths["OUT"].write_text('{"old": true}\n')
    return paths


def _argv(command: list[str], paths: dict[str, Path]) -> list[str]:
    out = []
    for word in command:
        head, _, rest = word.partition("/")
        out.append(str(paths[head] / rest if rest else paths[head]) if head in paths else word)
    return out


def _everything(root: Path) -> dict[str, bytes]:
    return {k: v for k, v in _files(root).items() if not k.endswith("filler.bin")}


def _check_refused(root: Path, done: subprocess.CompletedProcess[bytes]) -> str:
    """One line, status 3, naming a path under *root* (the store, or what it made)."""
    err = _one_line_error(done, 3)
    assert f"error: {root}/" in err, err
    return err


@pytest.mark.parametrize("case", list(WRITING))
def test_writing_commands_on_a_read_only_filesystem(
    small_root: Path, tmp_path: Path, case: str
) -> None:
    source = tmp_path / "in.json"
    source.write_text('{"a": {"x": 1}, "b": {"y": 2}}')
    paths = _layout(small_root, source)
    before = _everything(small_root)
    remount_readonly(small_root)
    argv = _argv(WRITING[case], paths)
    done = tastypy_cmd(*argv)
    err = _check_refused(small_root, done)
    assert "Read-only file system (EROFS)" in err
    assert _everything(small_root) == before


@pytest.mark.parametrize("case", list(WRITING))
def test_writing_commands_on_a_full_disk(small_root: Path, tmp_path: Path, case: str) -> None:
    source = tmp_path / "in.json"
    source.write_text(json.dumps({f"new-{i}": {"v": "x" * 100} for i in range(3000)}))
    paths = _layout(small_root, source)
    contents = {name: _items(paths[name]) for name in ("POD", "TRACKER")}
    old_out = paths["OUT"].read_bytes()
    fill(small_root)
    argv = _argv(WRITING[case], paths)
    done = tastypy_cmd(*argv)
    err = _check_refused(small_root, done)
    assert "No space left on device (ENOSPC)" in err
    # Nothing changed; nothing half made is left behind.
    for name, items in contents.items():
        assert _items(paths[name]) == items
        assert tastypy_cmd("verify", str(paths[name])).returncode == 0
    assert not paths["NEW"].exists()
    assert not paths["NEWFILE"].exists()
    assert paths["OUT"].read_bytes() == old_out
    assert sorted(p.name for p in small_root.iterdir()) == [
        "data.pod",
        "filler.bin",
        "jobs.tracker",
        "old.json",
    ]


def test_reading_and_opening_for_writing_work_on_a_full_disk(
    small_root: Path, tmp_path: Path
) -> None:
    tracker = small_root / "jobs.tracker"
    _make_tracker(tracker)
    (tracker / "lock").unlink()  # the open must make it and note itself: no room for the note
    fill(small_root)
    for args in (
        ["show", str(tracker)],
        ["keys", str(tracker)],
        ["status", str(tracker)],
        ["list", str(tracker), "--state", "todo"],
        ["verify", str(tracker)],
        ["export", str(tracker)],
        ["export", str(tracker), "-o", str(tmp_path / "out.json")],
    ):
        done = tastypy_cmd(*args)
        assert done.returncode == 0, (args, done.stderr)
        assert done.stderr == b"", (args, done.stderr)
    assert list(json.loads((tmp_path / "out.json").read_text())) == KEYS
    # The library: a writable open on a full disk reads, and exports
    with tastypy.Tracker(tracker) as opened:
        assert list(opened) == KEYS
        opened.copy(tmp_path / "copy.tracker")
    assert list(tastypy.Tracker(tmp_path / "copy.tracker", readonly=True)) == KEYS


def _without_dac_override() -> tuple[str, ...]:
    """A prefix that runs a command as root without the power to ignore permissions."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0:
        return ()  # an ordinary user meets permissions anyway
    if setpriv is None:
        pytest.skip("needs setpriv (util-linux) to run as root without CAP_DAC_OVERRIDE")
    prefix = (setpriv, "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search")
    probe = subprocess.run([*prefix, "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"cannot drop capabilities here: {probe.stderr.decode().strip()}")
    return prefix


@pytest.mark.parametrize("case", list(WRITING))
def test_writing_commands_without_permission(tmp_path: Path, case: str) -> None:
    prefix = _without_dac_override()
    root = tmp_path / "locked"
    root.mkdir()
    source = tmp_path / "in.json"
    source.write_text('{"a": {"x": 1}}')
    paths = _layout(root, source)
    before = _everything(root)
    modes = {}
    for each in [root, *root.rglob("*")]:
        modes[each] = each.stat().st_mode
        each.chmod(0o555 if each.is_dir() else 0o444)
    try:
        argv = _argv(WRITING[case], paths)
        done = tastypy_cmd(*argv, prefix=prefix)
        err = _check_refused(root, done)
        assert "Permission denied (EACCES)" in err
        assert _everything(root) == before
    finally:
        for each, mode in modes.items():
            each.chmod(mode)


def test_a_failed_import_into_a_new_path_leaves_nothing(small_root: Path, tmp_path: Path) -> None:
    # Here the store is made, and only the import's sync fails.
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps([f"k{i}", "v" * 1000]) + "\n" for i in range(20)))
    fill(small_root)
    filler = small_root / "filler.bin"
    os.truncate(filler, filler.stat().st_size - 8192)  # room to make the store, not to fill it
    done = tastypy_cmd("import", str(small_root / "a" / "b.pod"), str(source))
    _one_line_error(done, 3, str(small_root / "a" / "b.pod"), "ENOSPC", "nothing was imported")
    assert sorted(p.name for p in small_root.iterdir()) == ["filler.bin"]


# -- terminals that cannot encode, and keys that would wreck them -------------------------

ASCII_TERMINALS = {
    "PYTHONIOENCODING=ascii": {"PYTHONIOENCODING": "ascii"},
    "LC_ALL=C without UTF-8 mode": {
        "LC_ALL": "C",
        "LANG": "C",
        "PYTHONUTF8": "0",
        "PYTHONCOERCECLOCALE": "0",
        "PYTHONIOENCODING": "",
    },
}


def _every_command(store: Path, tmp_path: Path) -> list[list[str]]:
    source = tmp_path / "more.jsonl"
    source.write_text(json.dumps(["mörë\n", {"x": "ü"}]) + "\n")
    return [
        ["show", str(store)],
        ["show", str(store), "--json"],
        ["show", str(store), "plain"],
        ["keys", str(store)],
        ["status", str(store)],
        ["status", str(store), "--json"],
        ["list", str(store), "--state", "todo"],
        ["list", str(store), "--state", "todo", "--json"],
        ["export", str(store)],
        ["export", str(store), "-o", str(tmp_path / "out.json")],
        ["verify", str(store)],
        ["compact", str(store)],
        ["reset", str(store), "--all"],
        ["import", str(store), str(source)],
        ["keys", str(store)],
    ]


@pytest.mark.parametrize("terminal", list(ASCII_TERMINALS))
def test_every_command_on_an_ascii_terminal(tmp_path: Path, terminal: str) -> None:
    store = tmp_path / "jobs.tracker"
    _make_tracker(store)
    env = ASCII_TERMINALS[terminal]
    for args in _every_command(store, tmp_path):
        done = tastypy_cmd(*args, env=env)
        assert done.returncode == 0, (args, done.stderr)
        assert b"Traceback" not in done.stderr, (args, done.stderr)
        if args[0] == "export" and len(args) == 2:
            # data, not text for people: UTF-8 JSON, whole
            assert list(json.loads(done.stdout.decode("utf-8"))) == [*KEYS]
            continue
        text = done.stdout.decode("ascii")  # pure ASCII, or this raises
        if args[-1] == "--json":
            json.loads(text)  # still valid JSON
    listed = tastypy_cmd("keys", str(store), env=env).stdout.decode("ascii").splitlines()
    assert listed == [_escaped_key(key, ascii_only=True) for key in [*KEYS, "mörë\n"]]


def _escaped_key(key: str, *, ascii_only: bool) -> str:
    """What the README promises for a key: itself if safe, else its Python literal."""
    safe = key.isprintable() and not key.startswith(("'", '"'))
    if ascii_only:
        return key if safe and key.isascii() else ascii(key)
    return key if safe else repr(key)


def test_control_characters_never_reach_the_terminal(tmp_path: Path) -> None:
    store = tmp_path / "jobs.tracker"
    _make_tracker(store)
    for args in [
        ["keys", str(store)],
        ["list", str(store), "--state", "todo"],
        ["list", str(store), "--state", "todo", "--json"],
        ["status", str(store)],
        ["status", str(store), "--json"],
        ["show", str(store), "new\nline"],
        ["show", str(store), "new\nline", "--json"],
        ["show", str(store)],
        ["show", str(store), "--json"],
        ["export", str(store)],
        ["export", str(store), "--format", "jsonl"],
    ]:
        done = tastypy_cmd(*args)
        assert done.returncode == 0, (args, done.stderr)
        text = done.stdout.decode("utf-8")
        unsafe = [c for c in text if c != "\n" and not c.isprintable()]
        assert unsafe == [], (args, text)
        if args[-1] == "--json" or (args[0] == "export" and len(args) == 2):
            json.loads(text)
    exported = json.loads(tastypy_cmd("export", str(store)).stdout)
    assert list(exported) == KEYS  # escaped, not lost
    keys = tastypy_cmd("keys", str(store)).stdout.decode("utf-8").splitlines()
    assert keys == [_escaped_key(key, ascii_only=False) for key in KEYS]
    assert keys[1] == "ünï" and keys[2] == "漢字のキー"  # printable text stays itself
    shown = json.loads(tastypy_cmd("show", str(store), "new\nline").stdout)
    assert shown["note"] == "value with \x1b[2J and \x9b and \u2028"  # escaped, not lost
    screen = tastypy_cmd("status", str(store)).stdout.decode()
    assert "\\x1b[31mboom\\nsecond line" in screen
    # error messages too: one line, escaped
    missing = tastypy_cmd("show", str(store), "no\x1b[31m\nsuch")
    _one_line_error(missing, 2, "no key 'no\\x1b[31m\\nsuch'")


def _cells(text: str) -> int:
    return sum(
        0
        if unicodedata.combining(c)
        else 2
        if unicodedata.east_asian_width(c) in ("W", "F")
        else 1
        for c in text
    )


def test_wide_characters_are_counted_in_terminal_cells(tmp_path: Path) -> None:
    store = tmp_path / "wide.tracker"
    with tastypy.Tracker(store) as tracker:
        tracker.add_many(["a", "b"])
        tracker.try_it("a")
        message = "漢字のエラーメッセージ" * 10 + "e\u0301" * 5
        tracker["a"]["_errors"] = [{"type": "エラー", "message": message, "at": ""}]
    screen = tastypy_cmd("status", str(store)).stdout.decode()
    line = next(line for line in screen.splitlines() if "エラー" in line)
    assert _cells(line) <= 80
    assert _cells(line) >= 79  # cut at the edge, not at 40 characters
    assert line.endswith("…")
    deep = tmp_path / ("漢字" * 30)
    shutil.copytree(store, deep)
    first = tastypy_cmd("status", str(deep)).stdout.decode().splitlines()[0]
    assert _cells(first) <= 80
    assert first.endswith("…")


# -- a store held by another process ------------------------------------------------------

HOLD = """
import sys
import tastypy

tracker = tastypy.Tracker(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
tracker.close()
print("closed", flush=True)
"""


@pytest.mark.parametrize(
    "command",
    [["compact"], ["import", "IN"], ["reset", "--all"]],
    ids=lambda c: c[0],
)
def test_a_held_store_gets_cli_advice_and_timeout_waits(
    tmp_path: Path, command: list[str]
) -> None:
    store = tmp_path / "jobs.tracker"
    _make_tracker(store)
    source = tmp_path / "in.json"
    source.write_text('{"fresh": {}}')
    args = [str(source) if word == "IN" else word for word in command[1:]]
    with Child(HOLD, str(store)) as writer:
        writer.expect("ready")
        refused = tastypy_cmd(command[0], str(store), *args)
        err = _one_line_error(refused, 2, str(store), f"process {writer.pid}")
        assert "--timeout SECONDS" in err
        assert "timeout=" not in err
        with subprocess.Popen(
            [sys.executable, "-m", "tastypy", command[0], str(store), *args, "--timeout", "60"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ) as waiting:
            _until_it_waits(waiting.pid)
            writer.send()  # let go: the waiting command takes the store then
            writer.expect("closed")
            out, err_bytes = waiting.communicate(timeout=WAIT)
        assert waiting.returncode == 0, err_bytes
        assert str(store).encode() in out
        assert writer.finish() == 0


def _until_it_waits(pid: int) -> None:
    """Return once process *pid* sleeps between its attempts at the lock."""
    wchan = Path(f"/proc/{pid}/wchan")
    deadline = time.monotonic() + WAIT
    while wchan.exists() and "nanosleep" not in wchan.read_text():
        assert time.monotonic() < deadline, "the command never waited for the lock"
        time.sleep(0.01)


def test_timeout_must_be_seconds(tmp_path: Path) -> None:
    store = tmp_path / "s.pod"
    tastypy.POD(store).close()
    for bad in ("-1", "soon", "nan"):
        done = tastypy_cmd("compact", str(store), "--timeout", bad)
        assert done.returncode == 2
        assert b"Traceback" not in done.stderr


# -- import errors, plurals ---------------------------------------------------------------


def test_import_errors_name_the_line_and_the_key(tmp_path: Path) -> None:
    store = tmp_path / "s.pod"
    with tastypy.POD(store) as pod:
        pod["a"] = 1
    source = tmp_path / "in.json"
    source.write_text('{\n  "ok": 1,\n\n  "bad\\nkey": NaN\n}\n')
    done = tastypy_cmd("import", str(store), str(source))
    _one_line_error(done, 2, f"{source}:4:", "'bad\\nkey'", "nothing was imported")
    tracker = tmp_path / "t.tracker"
    tastypy.Tracker(tracker).close()
    lines = tmp_path / "in.jsonl"
    lines.write_text('["x", {}]\n\n["y", 42]\n')
    done = tastypy_cmd("import", str(tracker), str(lines))
    _one_line_error(done, 2, f"{lines}:3:", "'y'", "nothing was imported")
    assert _items(store) == [("a", 1)]
    assert _items(tracker) == []


def test_counts_in_words_are_singular_for_one(tmp_path: Path) -> None:
    store = tmp_path / "s.pod"
    source = tmp_path / "one.json"
    source.write_text('{"a": 1}')
    assert tastypy_cmd("import", str(store), str(source)).stdout == (
        f"{store}: imported 1 key\n".encode()
    )
    assert tastypy_cmd("compact", str(store)).stdout == f"{store}: compacted (1 key)\n".encode()
    source.write_text('{"b": 1, "c": 2}')
    assert tastypy_cmd("import", str(store), str(source)).stdout == (
        f"{store}: imported 2 keys\n".encode()
    )


# -- export -o is whole or nothing ---------------------------------------------------------


def test_export_replaces_the_file_whole_and_keeps_its_permissions(tmp_path: Path) -> None:
    store = tmp_path / "s.pod"
    with tastypy.POD(store) as pod:
        pod.update({"a": 1, "b": [2]})
    out = tmp_path / "out.json"
    out.write_text("old")
    out.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(out)
    done = tastypy_cmd("export", str(store), "-o", str(link))
    assert done.returncode == 0, done.stderr
    assert link.is_symlink()  # written through the link, as before
    assert json.loads(out.read_text()) == {"a": 1, "b": [2]}
    assert out.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "out.json", "s.pod"]
    devnull = tastypy_cmd("export", str(store), "-o", os.devnull)
    assert devnull.returncode == 0
    assert Path(os.devnull).is_char_device()  # written to, never replaced
