"""SIGKILL a writer at random moments: the store always holds a whole sync.

The writer applies deterministic batches (see _workload.py), calls sync()
after each and prints the batch number once sync() has returned. Its
compaction threshold is tiny, so kills also land inside compactions. After each
kill the store must open and equal, order included, the state after the last
printed batch or the one after it (killed after the commit, before the print).
Each round continues from what the last one left.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import tastypy

from _workload import StateCache

WRITER = """
import sys
sys.path.insert(0, {here!r})
from _workload import apply_batch
import tastypy
import tastypy.storage.files._engine
tastypy.storage.files._engine.COMPACT_MIN_BYTES = 4000  # compact every few batches
pod = tastypy.POD({path!r}, file_size=5, sync_at=10**9, gzipped={gzipped!r})
n = pod["_batch"] + 1 if "_batch" in pod else 0
print("open", n, flush=True)
while True:
    apply_batch(pod, n)
    pod.sync()
    print(n, flush=True)
    n += 1
"""

# TASTYPY_CRASH_ROUNDS=500 for a long run; the default keeps CI near a minute.
ROUNDS = int(os.environ.get("TASTYPY_CRASH_ROUNDS", "30"))


def _run_and_kill(code: str, delay: float) -> list[str]:
    lines: list[str] = []
    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        out = proc.stdout
        reader = threading.Thread(target=lambda: lines.extend(out), daemon=True)
        reader.start()
        time.sleep(delay)
        proc.kill()
        proc.wait(timeout=30)
        reader.join(timeout=30)
        errors = proc.stderr.read()
    assert proc.returncode == -9, f"writer ended by itself ({proc.returncode}): {errors}"
    return [line.strip() for line in lines]


@pytest.mark.parametrize("gzipped", [False, True])
def test_sigkill_at_any_moment_leaves_a_whole_sync(tmp_path: Path, gzipped: bool) -> None:
    path = tmp_path / "store"
    code = WRITER.format(here=str(Path(__file__).parent), path=str(path), gzipped=gzipped)
    rng = random.Random(1234 + gzipped)
    state_after = StateCache()
    last = -1
    progressed = 0
    for _ in range(ROUNDS):
        printed = _run_and_kill(code, rng.uniform(0.15, 0.6))
        batches = [int(line) for line in printed if line.isdigit()]
        if batches:
            assert batches[0] in (last + 1, last + 2)  # resumed from what was on disk
            last = batches[-1]
            progressed += 1
        if not path.exists():
            continue  # killed before the store was created
        with tastypy.POD(path, readonly=True) as reader:
            found = list(reader.items())
        candidates = (state_after(last), state_after(last + 1))
        assert found in candidates, f"store holds neither batch {last} nor {last + 1}"
        if found == candidates[1]:
            last += 1
    assert progressed >= ROUNDS // 2, "the writer rarely got to sync; the test proved little"
