"""What ``tastypy status`` and ``tastypy list`` show of a tracker."""

from __future__ import annotations

import json
import socket
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..storage.engines import is_url, members, writers
from ..storage.protocol import TaskSummary
from ..tracker._counts import ABORTED, DONE, EXHAUSTED, TRIED, TaskCounts
from ..tracker._retry import due_at
from ._display import can_encode, escaped, fit

__all__ = [
    "STATES",
    "Snapshot",
    "in_state",
    "processes",
    "render",
    "snapshot",
    "summarized",
    "writer",
]

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
    waiting: int = 0  # of those to do, waiting for a retry not due yet (_retry_at)
    next_retry: float | None = None  # seconds until the first of them is due
    errors: list[tuple[str, int]] = field(default_factory=list)  # most frequent first
    rate: float | None = None  # tasks done per second, while a job runs
    eta_seconds: float | None = None
    writer: int | None = None  # pid of the process holding the store for writing (0: unknown)
    writer_state: str | None = None  # "running", or "stopped" (SIGSTOP, Ctrl-Z)
    # A shared store's live writers: pid, tasks held, tries claimed per second.
    processes: list[dict[str, Any]] = field(default_factory=list)

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
    states: Counter[str] = Counter()
    for key in records:
        states[state_of(counts.status.get(key, 0))] += 1
    # Each task in exactly one state (as `tastypy list` files them), so the
    # states add up to the total; "tried" overlaps them all.
    shot.done, shot.failed, shot.untried = states["done"], states["failed"], states["untried"]
    shot.exhausted, shot.aborted = states["exhausted"], states["aborted"]
    shot.tried = counts.counts[TRIED]
    _note(shot, records.values(), counts, top)
    return shot


def summarized(summary: TaskSummary, top: int = 5) -> Snapshot:
    """:func:`snapshot` of a tracker its engine counted (``engines.task_summary``)."""
    shot = Snapshot(total=summary.total, done=summary.done, tried=summary.tried)
    shot.failed, shot.exhausted, shot.aborted = summary.failed, summary.exhausted, summary.aborted
    shot.untried = summary.total - summary.done - summary.failed
    shot.untried -= summary.exhausted + summary.aborted
    _note(shot, map(_with_tries, summary.notable), TaskCounts(summary.max_tries), top)
    return shot


def _with_tries(found: tuple[bytes, int | None]) -> Any:
    """A notable record, its tries raised to what claims counted (as the tracker shows it)."""
    blob, claimed = found
    record = orjson.loads(blob)
    if claimed is not None and isinstance(record, dict):
        tries = record.get("_tries", 0)
        if type(tries) is int and tries < claimed:
            record["_tries"] = claimed
    return record


def _note(shot: Snapshot, records: Iterable[Any], counts: TaskCounts, top: int) -> None:
    """The errors most frequent among tasks not done, and the retries not due yet."""
    errors: Counter[str] = Counter()
    now = time.time()
    due: list[float] = []
    for record in records:
        bits = counts.status_of(record)
        at = due_at(record)
        if at is not None and at > now and not bits & (DONE | ABORTED | EXHAUSTED):
            due.append(at)
        if not bits & DONE and isinstance(record, dict):
            recent = record.get("_errors")
            if isinstance(recent, list) and recent and isinstance(recent[-1], dict):
                last = recent[-1]
                message = str(last.get("message", ""))
                errors[f"{last.get('type', 'Error')}: {message}"[:200]] += 1
    shot.errors = errors.most_common(top)
    shot.waiting = len(due)
    shot.next_retry = round(min(due) - now, 3) if due else None


def writer(store: Path | str) -> tuple[int | None, str | None]:
    """Who holds *store* for writing now, and whether it runs: ``(pid, state)``.

    The holder is the process the OS says holds the store open for writing
    (see :func:`tastypy.storage.engines.writers`), never a pid merely named in
    a file: a copied store, or a killed writer whose pid was reused, has no
    writer. *state* is ``"stopped"`` when the holder is stopped by a
    signal (``T`` or ``t`` in ``/proc/PID/stat``; SIGSTOP, Ctrl-Z, a
    debugger), else ``"running"``; ``(None, None)`` when nobody writes.
    """
    if is_url(str(store)):  # on PostgreSQL: the processes holding tasks, on any machine
        holders = members(store)
        if not holders:
            return None, None
        first = holders[0]
        return first.pid, _state(first.pid, first.host)
    found = writers(store)
    if not found:
        return None, None
    pid = found[0]
    return pid, "stopped" if pid and _process_state(pid) in ("T", "t") else "running"


def _state(pid: int, host: str) -> str:
    """``"stopped"`` or ``"running"``: a process on another machine counts as running."""
    here = not host or host == socket.gethostname()
    return "stopped" if here and pid and _process_state(pid) in ("T", "t") else "running"


def processes(store: Path | str, now: float) -> list[dict[str, Any]]:
    """Each live process writing the shared store at *store*: pid, tasks held, its rate.

    The rate is the tries it claimed per second since it opened the store.
    """
    found = []
    for member in members(store):
        seconds = now - member.since
        rate = member.claims / seconds if seconds > 0 and member.since else None
        found.append(
            {
                "pid": member.pid,
                "host": member.host,
                "holding": member.holding,
                "rate": None if rate is None else round(rate, 1),
                "state": _state(member.pid, member.host),
            }
        )
    return found


def _process_state(pid: int) -> str | None:
    """The one-letter state of process *pid* (Linux ``/proc``); None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "PID (COMMAND) STATE ...": COMMAND may hold spaces and parentheses
    fields = stat[stat.rfind(")") + 1 :].split()
    return fields[0] if fields else None


def render(path: str, shot: Snapshot, *, colour: bool, width: int = 80) -> str:
    """The ``tastypy status`` screen, at most *width* columns."""
    green, red, dim, reset = (
        ("\033[32m", "\033[31m", "\033[2m", "\033[0m") if colour else ("",) * 4
    )
    total = shot.total or 1
    bar_width = max(10, width - 30)
    filled = round(bar_width * shot.done / total)
    percent = 100 * shot.done / total if shot.total else 0.0
    full, empty = ("█", "·") if can_encode("█·") else ("#", ".")
    bar = green + full * filled + reset + dim + empty * (bar_width - filled) + reset
    lines = [
        fit(escaped(path), width),
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
    if shot.waiting and shot.next_retry is not None:
        lines.append(
            f"  {shot.waiting:,} waiting for a retry, the next due in "
            f"{_duration(max(0.0, shot.next_retry))}"
        )
    lines.append("")
    pid = f" (pid {shot.writer})" if shot.writer else ""
    if shot.processes:
        count = len(shot.processes)
        rate = "measuring..." if shot.rate is None else f"{shot.rate:,.1f} tasks/s"
        eta = "" if shot.eta_seconds is None else f", done in about {_duration(shot.eta_seconds)}"
        lines.append(f"{count} process{'es' if count > 1 else ''} sharing it: {rate}{eta}")
        for each in shot.processes:
            each_rate = "" if each["rate"] is None else f", {each['rate']:,.1f} tries/s"
            stopped = " (stopped)" if each["state"] == "stopped" else ""
            host = f" on {escaped(each['host'])}" if each.get("host") else ""
            lines.append(
                f"  pid {each['pid']}{host}{stopped}: holds {each['holding']:,}{each_rate}"
            )
    elif shot.writer is not None and shot.writer_state == "stopped":
        resume = f"kill -CONT {shot.writer}" if shot.writer else "kill -CONT"
        lines.append(f"job stopped{pid}: no progress until it is resumed ({resume})")
    elif shot.writer is not None:
        rate = "measuring..." if shot.rate is None else f"{shot.rate:,.1f} tasks/s"
        eta = "" if shot.eta_seconds is None else f", done in about {_duration(shot.eta_seconds)}"
        lines.append(f"job running{pid}: {rate}{eta}")
    else:
        lines.append("no job is writing to this store")
    if shot.errors:
        lines.append("")
        lines.append("most frequent recent errors:")
        for message, count in shot.errors:
            lines.append(f"  {red}{count:>6,}{reset}  " + fit(escaped(message), width - 10))
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 90 * 60:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
