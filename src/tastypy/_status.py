"""What ``tastypy status`` and ``tastypy list`` show of a tracker."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ._counts import ABORTED, DONE, EXHAUSTED, TRIED, TaskCounts
from .storage._lock import holder_pid

__all__ = ["STATES", "Snapshot", "in_state", "render", "snapshot", "writer_pid"]

STATES = ("done", "todo", "failed", "exhausted", "aborted", "untried")


@dataclass
class Snapshot:
    """A tracker's numbers at one moment."""

    total: int = 0
    done: int = 0
    tried: int = 0
    failed: int = 0  # tried, not done (nor exhausted or aborted)
    exhausted: int = 0  # tried max_tries times, not done (nor aborted)
    aborted: int = 0  # given up on by abort(), not done
    untried: int = 0
    errors: list[tuple[str, int]] = field(default_factory=list)  # most frequent first
    rate: float | None = None  # tasks done per second, while a job runs
    eta_seconds: float | None = None
    writer: int | None = None  # pid of the process writing, if any

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def state_of(bits: int) -> str:
    """The one state ``tastypy list`` files a task under."""
    if bits & DONE:
        return "done"
    if bits & ABORTED:
        return "aborted"
    if bits & EXHAUSTED:
        return "exhausted"
    if bits & TRIED:
        return "failed"
    return "untried"


def in_state(records: dict[str, Any], max_tries: int, state: str) -> list[str]:
    """Keys of the tasks in *state* (``todo``: not done, aborted or exhausted)."""
    counts = TaskCounts(max_tries)
    keys = []
    for key, record in records.items():
        name = state_of(counts.status_of(record))
        if name == state or (state == "todo" and name in ("failed", "untried")):
            keys.append(key)
    return keys


def snapshot(records: dict[str, Any], max_tries: int, top: int = 5) -> Snapshot:
    counts = TaskCounts(max_tries)
    counts.recount(records)
    shot = Snapshot(total=len(records))
    errors: Counter[str] = Counter()
    states: Counter[str] = Counter()
    for key, record in records.items():
        bits = counts.status.get(key, 0)
        states[state_of(bits)] += 1
        if not bits & DONE and isinstance(record, dict):
            recent = record.get("_errors")
            if isinstance(recent, list) and recent and isinstance(recent[-1], dict):
                last = recent[-1]
                message = str(last.get("message", ""))
                errors[f"{last.get('type', 'Error')}: {message}"[:200]] += 1
    # Each task in exactly one state (as `tastypy list` files them), so the
    # states add up to the total; "tried" overlaps them all.
    shot.done, shot.failed, shot.untried = states["done"], states["failed"], states["untried"]
    shot.exhausted, shot.aborted = states["exhausted"], states["aborted"]
    shot.tried = counts.counts[TRIED]
    shot.errors = errors.most_common(top)
    return shot


def writer_pid(store: Path) -> int | None:
    """The pid of the process holding the store for writing, if it is alive."""
    pid = holder_pid(store)
    if pid is None:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except OSError:
        pass  # it lives, as another user's process
    return pid


def render(path: str, shot: Snapshot, *, colour: bool, width: int = 80) -> str:
    """The ``tastypy status`` screen, at most *width* columns."""
    green, red, dim, reset = (
        ("\033[32m", "\033[31m", "\033[2m", "\033[0m") if colour else ("",) * 4
    )
    total = shot.total or 1
    bar_width = max(10, width - 30)
    filled = round(bar_width * shot.done / total)
    percent = 100 * shot.done / total if shot.total else 0.0
    bar = green + "█" * filled + reset + dim + "·" * (bar_width - filled) + reset
    lines = [
        _fit(path, width),
        f"{bar} {percent:5.1f}% {shot.done:,}/{shot.total:,}",
        "",
    ]
    for label, count in (
        ("done", shot.done),
        ("tried", shot.tried),
        ("failed", shot.failed),
        ("exhausted", shot.exhausted),
        ("aborted", shot.aborted),
        ("untried", shot.untried),
    ):
        share = 100 * count / total if shot.total else 0.0
        lines.append(f"  {label:<10} {count:>10,}  {share:6.2f} %")
    lines.append("")
    if shot.writer is not None:
        rate = "measuring..." if shot.rate is None else f"{shot.rate:,.1f} tasks/s"
        eta = "" if shot.eta_seconds is None else f", done in about {_duration(shot.eta_seconds)}"
        lines.append(f"job running (pid {shot.writer}): {rate}{eta}")
    else:
        lines.append("no job is writing to this store")
    if shot.errors:
        lines.append("")
        lines.append("most frequent recent errors:")
        for message, count in shot.errors:
            lines.append(_fit(f"  {red}{count:>6,}{reset}  {message}", width + len(red + reset)))
    return "\n".join(lines)


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 90 * 60:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
