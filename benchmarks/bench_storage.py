"""tastypy's storage against its peers, measured side by side in one run.

Usage:  .venv/bin/python benchmarks/bench_storage.py [--n 100000] [--big 1000000]

Peers: sqlitedict (autocommit off, one commit), diskcache.Index (inside
transact()), lmdb with JSON values (one write transaction, env.sync), and the
naive "json.dumps the whole dict, fsync, rename". Each figure is the best of
--repeat runs (machines here are shared and noisy); ratios compare figures
from this same run. Needs: pip install sqlitedict diskcache lmdb.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import diskcache
import lmdb
import sqlitedict

import tastypy


def make_data(n: int) -> dict[str, Any]:
    rng = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyz "
    return {
        f"key{i}": {
            "_done": False,
            "_tries": 0,
            "result": "".join(rng.choice(letters) for _ in range(50)),
        }
        for i in range(n)
    }


def best(fn: Callable[[], float], repeat: int) -> float:
    return min(fn() for _ in range(repeat))


class Peer:
    name = ""

    def __init__(self, root: Path) -> None:
        self.path = root / self.name

    def clear(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self.path.exists():
            self.path.unlink()

    def insert(self, data: dict[str, Any]) -> None:
        raise NotImplementedError  # abstract

    def read_all(self, keys: list[str]) -> None:
        raise NotImplementedError  # abstract

    def open(self) -> Any:
        """Open for writing (not timed)."""
        raise NotImplementedError  # abstract

    def set_and_sync(self, handle: Any, key: str, value: Any) -> None:
        """Set one key and make it durable."""
        raise NotImplementedError  # abstract

    def close(self, handle: Any) -> None:
        handle.close()


class Tastypy(Peer):
    name = "tastypy"

    def insert(self, data: dict[str, Any]) -> None:
        pod = tastypy.POD(self.path)
        for key, value in data.items():
            pod[key] = value
        pod.close()

    def read_all(self, keys: list[str]) -> None:
        pod = tastypy.POD(self.path)
        for key in keys:
            pod[key]
        pod.close()

    def open(self) -> Any:
        return tastypy.POD(self.path)

    def set_and_sync(self, handle: Any, key: str, value: Any) -> None:
        handle[key] = value
        handle.sync()


class SqliteDict(Peer):
    name = "sqlitedict"

    def insert(self, data: dict[str, Any]) -> None:
        with sqlitedict.SqliteDict(str(self.path), autocommit=False) as db:
            for key, value in data.items():
                db[key] = value
            db.commit()

    def read_all(self, keys: list[str]) -> None:
        with sqlitedict.SqliteDict(str(self.path), flag="r") as db:
            for key in keys:
                db[key]

    def open(self) -> Any:
        return sqlitedict.SqliteDict(str(self.path), autocommit=False)

    def set_and_sync(self, handle: Any, key: str, value: Any) -> None:
        handle[key] = value
        handle.commit()


class DiskcacheIndex(Peer):
    name = "diskcache"

    def insert(self, data: dict[str, Any]) -> None:
        index = diskcache.Index(str(self.path))
        with index.transact():
            for key, value in data.items():
                index[key] = value
        index.cache.close()

    def read_all(self, keys: list[str]) -> None:
        index = diskcache.Index(str(self.path))
        for key in keys:
            index[key]
        index.cache.close()

    def open(self) -> Any:
        return diskcache.Index(str(self.path))

    def set_and_sync(self, handle: Any, key: str, value: Any) -> None:
        handle[key] = value  # its own transaction (SQLite WAL, synchronous=NORMAL)

    def close(self, handle: Any) -> None:
        handle.cache.close()


class Lmdb(Peer):
    name = "lmdb"

    def _env(self, readonly: bool = False) -> Any:
        return lmdb.open(str(self.path), map_size=8 << 30, readonly=readonly, lock=not readonly)

    def insert(self, data: dict[str, Any]) -> None:
        env = self._env()
        with env.begin(write=True) as txn:
            for key, value in data.items():
                txn.put(key.encode(), json.dumps(value).encode())
        env.sync(True)
        env.close()

    def read_all(self, keys: list[str]) -> None:
        env = self._env(readonly=True)
        with env.begin() as txn:
            for key in keys:
                json.loads(txn.get(key.encode()))
        env.close()

    def open(self) -> Any:
        return self._env()

    def set_and_sync(self, handle: Any, key: str, value: Any) -> None:
        with handle.begin(write=True) as txn:  # commits (and fsyncs) on exit
            txn.put(key.encode(), json.dumps(value).encode())


class Naive(Peer):
    name = "naive json"

    def _dump(self, data: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)

    def insert(self, data: dict[str, Any]) -> None:
        copy = {}
        for key, value in data.items():
            copy[key] = value
        self._dump(copy)

    def read_all(self, keys: list[str]) -> None:
        with open(self.path) as f:
            data = json.load(f)
        for key in keys:
            data[key]

    def open(self) -> Any:
        with open(self.path) as f:
            return json.load(f)

    def set_and_sync(self, handle: Any, key: str, value: Any) -> None:
        handle[key] = value
        self._dump(handle)

    def close(self, handle: Any) -> None:
        pass


def timed(fn: Callable[[], None]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def peers_table(root: Path, n: int, repeat: int) -> tuple[str, dict[str, dict[str, float]]]:
    data = make_data(n)
    keys = list(data)
    rng = random.Random(1)
    few = [rng.choice(keys) for _ in range(1000)]
    peers = [Tastypy(root), SqliteDict(root), DiskcacheIndex(root), Lmdb(root), Naive(root)]
    results: dict[str, dict[str, float]] = {}
    for peer in peers:
        r: dict[str, float] = {}

        def insert(peer: Peer = peer) -> float:
            peer.clear()
            return timed(lambda: peer.insert(data))

        r["insert"] = best(insert, repeat)
        r["read"] = best(lambda peer=peer: timed(lambda: peer.read_all(keys)), repeat)
        count = 20 if isinstance(peer, Naive) else len(few)
        runs = iter(range(1, 1000))

        def set_sync(peer: Peer = peer, count: int = count, runs: Iterator[int] = runs) -> float:
            handle = peer.open()
            run = next(runs)  # a new value each run, so every set is a real change
            values = [{"_done": True, "_tries": run, "result": f"{k} {run}"} for k in few]
            pairs = list(zip(few[:count], values, strict=False))
            elapsed = timed(lambda: [peer.set_and_sync(handle, k, v) for k, v in pairs])
            peer.close(handle)
            return elapsed / count

        r["set+sync"] = best(set_sync, repeat)
        results[peer.name] = r
        peer.clear()
        print(f"  measured {peer.name}", file=sys.stderr)
    rows = [
        [f"figure (N={n:,})", *[p.name for p in peers], "tastypy / sqlitedict", "tastypy / lmdb"]
    ]
    names = {
        "insert": "insert N + close (s)",
        "read": "reopen + read all (s)",
        "set+sync": "set 1 key + durable sync (ms)",
    }
    for fig, label in names.items():
        scale = 1000 if fig == "set+sync" else 1
        t = results["tastypy"][fig]
        rows.append(
            [label]
            + [f"{results[p.name][fig] * scale:.3f}" for p in peers]
            + [f"{t / results['sqlitedict'][fig]:.2f}x", f"{t / results['lmdb'][fig]:.2f}x"]
        )
    return table(rows), results


def build_store(path: Path, n: int) -> None:
    values = make_data(min(n, 100_000))
    template = list(values.values())
    with tastypy.POD(path) as pod:
        for i in range(n):
            pod[f"key{i}"] = template[i % len(template)]


def generation(path: Path) -> int:
    return int(json.loads((path / "manifest.json").read_text())["generation"])


def sync_cost(path: Path, syncs: int, batch: int) -> list[float]:
    """Seconds of each sync() of *batch* random dirty keys, over *syncs* syncs."""
    pod = tastypy.POD(path)
    pod.hold()  # only the explicit sync() below may sync
    keys = list(pod)
    rng = random.Random(2)
    times = []
    s = 0
    folding_at_end = -1  # the generation a compaction was folding from at the last planned sync
    # On past *syncs* while a compaction folds in the background, until the
    # sync that installs it, which is measured too.
    while True:
        if s >= syncs:
            if folding_at_end < 0:
                if pod.storage._fold is None:  # type: ignore[attr-defined]
                    break
                folding_at_end = generation(path)
            elif generation(path) != folding_at_end or s > 20 * syncs:  # or it keeps failing
                break
        s += 1
        for key in rng.sample(keys, batch):
            pod[key]["_tries"] = s
        start = time.perf_counter()
        pod.sync()
        times.append(time.perf_counter() - start)
    pod.close()
    return times


def open_times(root: Path, n: int, repeat: int) -> tuple[float, float]:
    """Seconds to open the *n*-key store, and for lmdb to read and decode the same values."""
    path = root / f"store-{n}"
    env_path = root / f"lmdb-{n}"
    with tastypy.POD(path, readonly=True) as pod:
        env = lmdb.open(str(env_path), map_size=8 << 30)
        with env.begin(write=True) as txn:
            for key, value in pod.items():
                txn.put(key.encode(), json.dumps(value).encode())
        env.sync(True)
        env.close()

    def ours() -> float:
        return timed(lambda: tastypy.POD(path).close())

    def theirs() -> float:
        def read() -> None:
            env = lmdb.open(str(env_path), map_size=8 << 30, readonly=True, lock=False)
            with env.begin() as txn:
                {k.decode(): json.loads(v) for k, v in txn.cursor()}
            env.close()

        return timed(read)

    try:
        return best(ours, repeat), best(theirs, repeat)
    finally:
        shutil.rmtree(env_path, ignore_errors=True)


def written_bytes() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("wchar"))


def read_pass_bytes(path: Path) -> tuple[int, int]:
    """(bytes written by reading every key through pod[k] then sync(), store bytes)."""
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    pod = tastypy.POD(path)
    before = written_bytes()
    for key in pod:
        pod[key]
    pod.sync()
    after = written_bytes()
    pod.close()
    return after - before, size


MEMORY_CHILD = """
import gc, sys
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
sys.path.insert(0, {bench!r})
import tastypy
from bench_storage import make_data
n, kind, path = {n}, {kind!r}, {path!r}
results = [v["result"] for v in make_data(min(n, 100_000)).values()]
gc.collect()
base = rss()  # measured after the template data exists, so it does not count
if kind == "dict":
    # What a program would hold: literal keys, a string of its own per record.
    m = len(results)
    d = {{
        f"key{{i}}": {{"_done": False, "_tries": 0, "result": results[i % m].encode().decode()}}
        for i in range(n)
    }}
else:
    d = tastypy.POD(path)
gc.collect()
print(rss() - base)
"""


def memory(path: Path, n: int, kind: str) -> int:
    code = MEMORY_CHILD.format(bench=str(Path(__file__).parent), n=n, kind=kind, path=str(path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument(
        "--syncs",
        type=int,
        default=1500,
        help="syncs measured per store size (enough for the big store to compact)",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-peers", action="store_true", help="only the scaling figures")
    parser.add_argument(
        "--dir", default=None, help="where to put the stores (default: a temp dir)"
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tastypy-bench-", dir=args.dir))
    try:
        machine = f"{platform.platform()}, {os.cpu_count()} cores"
        print(f"# machine: {machine}, Python {platform.python_version()}")
        print(f"# command: {' '.join([Path(sys.executable).name, *sys.argv])}\n")
        if not args.skip_peers:
            text, _ = peers_table(root, args.n, args.repeat)
            print(text, "\n")
        print(table(scale_rows(root, args)))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def scale_rows(root: Path, args: argparse.Namespace) -> list[list[str]]:
    """The figures tastypy is held to on its own: scaling, writes, memory."""
    rows = [["figure", "value", "target"]]
    costs = {}
    for size in (args.small, args.big):
        path = root / f"store-{size}"
        build_store(path, size)
        if size == args.big:
            # Before the syncs below change the values (a _tries above 256 is an
            # int object of its own), so that the dict holds the same values.
            pod_rss, dict_rss = memory(path, size, "pod"), memory(path, size, "dict")
        first = generation(path)
        times = costs[size] = sync_cost(path, args.syncs, 1000)
        compactions = generation(path) - first - 1  # the last one was at close
        print(f"  built and synced the {size}-key store", file=sys.stderr)
        p99 = statistics.quantiles(times, n=100)[98]
        ms = [statistics.mean(times), statistics.median(times), p99, max(times)]
        rows.append(
            [
                f"sync of 1,000 dirty keys, {size:,}-key store, mean / median / p99 / max "
                f"({len(times)} syncs, {compactions} compactions)",
                "{:.1f} / {:.1f} / {:.1f} / {:.0f} ms".format(*[t * 1e3 for t in ms]),
                "p99 <= 20 ms, max <= 100 ms" if size == args.big else "",
            ]
        )
    ratio = statistics.mean(costs[args.big]) / statistics.mean(costs[args.small])
    rows.append(
        [f"  ratio of the means, {args.big:,} vs {args.small:,}", f"{ratio:.2f}x", "<= 2x"]
    )
    written, size = read_pass_bytes(root / f"store-{args.big}")
    rows.append(
        [
            "read every key via pod[k], then sync(): bytes written / store bytes",
            f"{written:,} / {size:,} = {written / size:.4%}",
            "< 1%",
        ]
    )
    ours, theirs = open_times(root, args.big, args.repeat)
    rows.append(
        [
            f"open the {args.big:,}-key store / lmdb+json reading the same values",
            f"{ours:.2f} / {theirs:.2f} s = {ours / theirs:.2f}x",
            "<= 0.5x",
        ]
    )
    rows.append(
        [
            f"memory of an open {args.big:,}-key store vs a plain dict (RSS)",
            f"{pod_rss / 2**20:.0f} / {dict_rss / 2**20:.0f} MiB = {pod_rss / dict_rss:.2f}x",
            "<= 1.2x",
        ]
    )
    return rows


if __name__ == "__main__":
    main()
