"""A resumable job: stop it (Ctrl-C, kill) at any moment, run it again, it resumes.

Usage: python examples/demo.py [PATH] [--tasks N]

Each task is a simulated piece of work (a short sleep and a computation).
Results are kept in a tastypy POD at PATH (default: ./demo.pod), so a rerun
skips every task whose result was synced. This is a placeholder until the
`tastypy demo` command lands; it uses only the POD.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time

import tastypy


def work(task: str) -> str:
    time.sleep(0.002)  # stands in for a network call or a computation
    return hashlib.sha256(task.encode()).hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default="demo.pod")
    parser.add_argument("--tasks", type=int, default=2000)
    args = parser.parse_args(argv)

    tasks = [f"task-{i:05d}" for i in range(args.tasks)]
    started = time.monotonic()
    with tastypy.POD(args.path, sync_at=100) as results:
        already = sum(1 for t in tasks if t in results)
        print(f"{args.path}: {already} of {len(tasks)} tasks already done", flush=True)
        for n, task in enumerate(tasks, 1):
            if task in results:
                continue
            results[task] = {"result": work(task), "at": time.time()}
            if n % 250 == 0:
                print(f"  {n}/{len(tasks)} done", flush=True)
    took = time.monotonic() - started
    print(f"all {len(tasks)} tasks done in {took:.1f}s; results are in {args.path}/")
    print(f"(run it again: nothing left to do; delete {args.path}/ to start over)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
