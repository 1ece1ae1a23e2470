"""SIGKILL a real process at each OS call of a sync and of a compaction.

Deterministic companion to test_kill_anytime: the child counts the calls
that change files (write, pwrite, fsync, fdatasync, ftruncate, replace,
unlink, open) and kills itself with SIGKILL just before the n-th one, for
every n the operation reaches. After each kill the store must open (for
writing, which also cuts torn tails and removes leftovers) with exactly the
state before or after the sync; a compaction must never change the contents.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import tastypy

CHILD = """
import os, signal, sys
import tastypy
path, gzipped, step, kill_at = sys.argv[1], sys.argv[2] == "1", sys.argv[3], int(sys.argv[4])
pod = tastypy.POD(path, file_size=3, gzipped=gzipped)
if not len(pod):
    for i in range(8):
        pod[f"k{{i}}"] = {{"i": i}}
    pod.sync()
if step == "sync":  # for "compact", an earlier run synced these into the journal
    pod["k0"] = "changed"
    pod["k1"]["i"] = 100
    del pod["k2"]
    pod["k3"] = pod.pop("k3")
    pod["new"] = [1, 2]
calls = 0
def counting(real):
    def call(*args, **kwargs):
        global calls
        calls += 1
        if calls == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return call
for name in ("write", "pwrite", "fsync", "fdatasync", "ftruncate", "replace", "unlink", "open"):
    setattr(os, name, counting(getattr(os, name)))
if step == "compact":
    pod._storage.compact()
else:
    pod.sync()
print("finished", calls, flush=True)
os._exit(0)
"""

BEFORE = [(f"k{i}", {"i": i}) for i in range(8)]
AFTER = [
    ("k0", "changed"),
    ("k1", {"i": 100}),
    *[(f"k{i}", {"i": i}) for i in range(4, 8)],
    ("k3", {"i": 3}),
    ("new", [1, 2]),
]


def _kill_at(path: Path, gzipped: bool, step: str, kill_at: int) -> bool:
    """Run the child; True if it was killed (False: it finished first)."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD.format(), str(path), str(int(gzipped)), step, str(kill_at)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode == 0:
        assert done.stdout.startswith("finished")
        return False
    assert done.returncode == -9, done.stderr
    return True


@pytest.mark.parametrize("gzipped", [False, True])
@pytest.mark.parametrize("step", ["sync", "compact"])
def test_kill_at_each_os_call(tmp_path: Path, gzipped: bool, step: str) -> None:
    killed_somewhere = 0
    for kill_at in range(1, 60):
        path = tmp_path / f"{step}-{kill_at}"
        if step == "compact":
            assert not _kill_at(path, gzipped, "sync", 10**6)  # build and sync the changes
        killed = _kill_at(path, gzipped, step, kill_at)
        with tastypy.POD(path) as pod:  # a writable open repairs what a kill left
            found = list(pod.items())
        if step == "compact":
            assert found == AFTER, f"killed at call {kill_at} of a compaction"
        else:
            assert found in (BEFORE, AFTER), f"killed at call {kill_at} of a sync"
        if not killed:
            assert found == AFTER
            break
        killed_somewhere += 1
    else:
        pytest.fail("the operation never finished: raise the range")
    assert killed_somewhere >= 2
