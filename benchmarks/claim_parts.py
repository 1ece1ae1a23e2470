"""Where one shared claim's time goes: ``try_it``'s steps timed one by one.

Usage:  .venv/bin/python benchmarks/claim_parts.py [--tasks 5000]

One process claims every task of a shared tracker, with the same steps, in
the same order, as ``FleetTasks._fleet_try`` (tracker/_fleet.py), each timed
apart: taking the task's byte lock, holding back signals, reading the other
writers' claims logs, catching up on their commits, the tries and holder
checks, the claim line, the record. Keep it in step with ``_fleet_try``.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import tastypy
from tastypy import _lifecycle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tastypy-claim-parts-"))
    try:
        path = root / "t"
        names = [f"task{i}" for i in range(args.tasks)]
        with tastypy.Tracker(path, shared=True) as seed:
            seed.add_many(names)
        tracker = tastypy.Tracker(path, shared=True, sync_at=10**9)
        storage: Any = tracker._storage  # the steps of _fleet_try, called one by one
        took: collections.Counter[str] = collections.Counter()
        clock = time.perf_counter
        for name in names:
            a = clock()
            storage.take(name)
            b = clock()
            with _lifecycle.critical():
                c = clock()
                with storage.claiming():
                    d = clock()
                    tracker._catch_up()
                    e = clock()
                    tries = storage.logged_tries(name)
                    storage.holder(name)
                    f = clock()
                    new = not storage.committed(name)
                    storage.claim(name, tries + 1, new=new)
                    g = clock()
                tracker._hand_out(name)["_tries"] = tries + 1
                h = clock()
            i = clock()
            for label, spent in (
                ("take the byte lock", b - a),
                ("hold back signals (enter and exit)", (c - b) + (i - h)),
                ("read the claims logs", d - c),
                ("catch up on commits", e - d),
                ("tries and holder checks", f - e),
                ("write the claim line", g - f),
                ("set the record", h - g),
            ):
                took[label] += spent
        tracker.close()
        total = sum(took.values())
        print(f"| step of a claim ({args.tasks:,} claims, one process) | µs per claim |")
        print("|---|---|")
        for label, spent in took.items():
            print(f"| {label} | {spent / args.tasks * 1e6:.1f} |")
        print(f"| all | {total / args.tasks * 1e6:.1f} |")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
