"""A POD syncs however the program ends; SIGKILL keeps exactly what was synced.

Every scenario runs in a child process (``python -c``); the outcome is checked
from this process by opening the store read-only (while the child lives) or
after the child has ended, comparing exact contents and key order.
"""

from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path
from typing import Any

import pytest

import tastypy

from _subproc import Child, read_store, run

# Start of every child: the store path is argv[1], a marker file path argv[2].
HEAD = """
import ctypes, gc, json, os, signal, sys, threading, time
path = sys.argv[1]
marker = sys.argv[2] if len(sys.argv) > 2 else None
"""

IMPORT = "import tastypy\n"

# Defines scenario(): opens the store, syncs SYNCED, then changes it (in
# place, delete + re-add, append) to FINAL without syncing. Only a sync at
# exit can put FINAL on disk.
SCENARIO = """
def scenario():
    pod = tastypy.POD(path)
    pod["b"] = 1
    pod["a"] = 2
    pod["c"] = 3
    pod.sync()
    pod["a"] = 20
    del pod["b"]
    pod["b"] = 10
    pod["d"] = {"x": [1, 2]}
    return pod
"""

SYNCED: list[tuple[str, Any]] = [("b", 1), ("a", 2), ("c", 3)]
FINAL: list[tuple[str, Any]] = [("a", 20), ("c", 3), ("b", 10), ("d", {"x": [1, 2]})]

# A user's SIGTERM handler: records what is on disk when it runs, then exits 3.
USER_HANDLER = """
def user_handler(signum, frame):
    with tastypy.POD(path, readonly=True) as ro:
        seen = [[k, v] for k, v in ro.items()]
    with open(marker, "w") as f:
        json.dump({"signum": signum, "seen": seen}, f)
    sys.exit(3)
"""


# Leaks a reference so the POD is never garbage-collected, not even at
# interpreter shutdown: only the exit hook can sync it then.
LEAK = """
ctypes.pythonapi.Py_IncRef(ctypes.py_object(pod))
"""


def code(*parts: str) -> str:
    return "".join(textwrap.dedent(part).strip("\n") + "\n" for part in parts)


def as_json(items: list[tuple[str, Any]]) -> list[list[Any]]:
    return [[k, v] for k, v in items]


def read_marker(marker: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(marker.read_text())
    return result


# -- normal exit, exceptions ------------------------------------------------------


@pytest.mark.parametrize("leaked", [False, True], ids=["global", "leaked-ref"])
@pytest.mark.parametrize(
    ("ending", "status", "in_stderr"),
    [
        pytest.param("pass", 0, None, id="falls-off-the-end"),
        pytest.param("sys.exit(5)", 5, None, id="sys.exit"),
        pytest.param("raise ValueError('boom')", 1, "ValueError: boom", id="uncaught-exception"),
        pytest.param(
            "raise KeyboardInterrupt", -signal.SIGINT, "KeyboardInterrupt", id="raise-KI"
        ),
    ],
)
def test_exit_syncs(
    tmp_path: Path, ending: str, status: int, in_stderr: str | None, leaked: bool
) -> None:
    store = tmp_path / "store"
    leak = LEAK if leaked else ""
    result = run(code(HEAD, IMPORT, SCENARIO, "pod = scenario()", leak, ending), str(store))
    assert result.returncode == status, result.stderr
    if in_stderr is None:
        assert result.stderr == ""
    else:
        assert in_stderr in result.stderr
        assert "could not sync" not in result.stderr
    assert read_store(store) == FINAL


def test_real_sigint_while_sleeping_syncs(tmp_path: Path) -> None:
    store = tmp_path / "store"
    body = code(
        HEAD,
        IMPORT,
        SCENARIO,
        "pod = scenario()",
        LEAK,
        "print('ready', flush=True)",
        "time.sleep(60)",
    )
    with Child(body, str(store)) as child:
        child.expect("ready")
        assert read_store(store) == SYNCED
        child.signal(signal.SIGINT)
        assert child.finish() == -signal.SIGINT
        assert "KeyboardInterrupt" in child.stderr
        assert "could not sync" not in child.stderr
    assert read_store(store) == FINAL


# -- SIGTERM ----------------------------------------------------------------------


def test_sigterm_without_handler_syncs_and_dies_by_sigterm(tmp_path: Path) -> None:
    store = tmp_path / "store"
    body = code(
        HEAD, IMPORT, SCENARIO, "pod = scenario()", "print('ready', flush=True)", "time.sleep(60)"
    )
    with Child(body, str(store)) as child:
        child.expect("ready")
        assert read_store(store) == SYNCED
        child.signal(signal.SIGTERM)
        # "killed by SIGTERM", as without tastypy; never a clean exit status
        assert child.finish() == -signal.SIGTERM
        assert child.stderr == ""
    assert read_store(store) == FINAL


@pytest.mark.parametrize("installed", ["before-import", "after-import"])
def test_sigterm_user_handler_installed_before_pod(tmp_path: Path, installed: str) -> None:
    """Our handler syncs first, then calls the user's (which sees the synced data)."""
    store, marker = tmp_path / "store", tmp_path / "marker.json"
    install = "signal.signal(signal.SIGTERM, user_handler)"
    if installed == "before-import":
        parts = (HEAD, USER_HANDLER, install, IMPORT)
    else:
        parts = (HEAD, IMPORT, USER_HANDLER, install)
    body = code(
        *parts, SCENARIO, "pod = scenario()", "print('ready', flush=True)", "time.sleep(60)"
    )
    with Child(body, str(store), str(marker)) as child:
        child.expect("ready")
        assert read_store(store) == SYNCED
        child.signal(signal.SIGTERM)
        assert child.finish() == 3, child.stderr
        assert child.stderr == ""
    assert read_marker(marker) == {"signum": signal.SIGTERM, "seen": as_json(FINAL)}
    assert read_store(store) == FINAL


def test_sigterm_user_handler_that_returns_keeps_process_alive(tmp_path: Path) -> None:
    """A chained user handler that returns: synced, and the program goes on."""
    store = tmp_path / "store"
    body = code(
        HEAD,
        IMPORT,
        """
        def user_handler(signum, frame):
            with tastypy.POD(path, readonly=True) as ro:
                print(json.dumps([[k, v] for k, v in ro.items()]), flush=True)
        signal.signal(signal.SIGTERM, user_handler)
        """,
        SCENARIO,
        "pod = scenario()",
        "print('ready', flush=True)",
        "sys.stdin.readline()",
        "print('survived', flush=True)",
        "pod['e'] = 5",
        "sys.stdin.readline()",
    )
    with Child(body, str(store)) as child:
        child.expect("ready")
        child.signal(signal.SIGTERM)
        assert json.loads(child.readline()) == as_json(FINAL)
        child.send()
        child.expect("survived")
        assert child.alive()
        assert child.finish() == 0, child.stderr
        assert child.stderr == ""
    assert read_store(store) == [*FINAL, ("e", 5)]


def test_sigterm_user_handler_installed_after_pod_wins(tmp_path: Path) -> None:
    """Documented behaviour: a SIGTERM handler installed after the POD replaces ours.

    Our handler does not run, so nothing is synced before the user's handler
    (it sees only what was synced earlier). Its ``sys.exit`` then runs the
    ``atexit`` hook, which still syncs everything.
    """
    store, marker = tmp_path / "store", tmp_path / "marker.json"
    body = code(
        HEAD,
        IMPORT,
        USER_HANDLER,
        SCENARIO,
        "pod = scenario()",
        LEAK,
        "signal.signal(signal.SIGTERM, user_handler)",
        "print('ready', flush=True)",
        "time.sleep(60)",
    )
    with Child(body, str(store), str(marker)) as child:
        child.expect("ready")
        child.signal(signal.SIGTERM)
        assert child.finish() == 3, child.stderr
        assert child.stderr == ""
    assert read_marker(marker) == {"signum": signal.SIGTERM, "seen": as_json(SYNCED)}
    assert read_store(store) == FINAL


@pytest.mark.parametrize("installed", ["before-pod", "after-pod"])
def test_sigterm_user_handler_that_chains_to_previous(tmp_path: Path, installed: str) -> None:
    """A handler calling the one it replaced (ours) ends in sync-then-die, never a loop.

    Installed after ``import tastypy`` but before the POD, it replaced our
    import-time handler, and the POD put ours back in front of it: ours syncs,
    calls it, it calls ours again. Installed after the POD, it runs first.
    """
    store = tmp_path / "store"
    handler = """
    def user_handler(signum, frame):
        with tastypy.POD(path, readonly=True) as ro:
            print("handler", json.dumps([[k, v] for k, v in ro.items()]), flush=True)
        previous(signum, frame)
    previous = signal.signal(signal.SIGTERM, user_handler)
    """
    before = installed == "before-pod"
    body = code(
        HEAD,
        IMPORT,
        SCENARIO,
        handler if before else "",
        "pod = scenario()",
        "" if before else handler,
        "print('ready', flush=True)",
        "sys.stdin.readline()",
    )
    with Child(body, str(store)) as child:
        child.expect("ready")
        child.signal(signal.SIGTERM)
        seen = FINAL if before else SYNCED
        assert child.readline() == "handler " + json.dumps(as_json(seen))
        assert child.finish() == -signal.SIGTERM, child.stderr
        assert child.stderr == ""
    assert read_store(store) == FINAL


@pytest.mark.parametrize(
    ("signum", "status"),
    [(signal.SIGTERM, 3), (signal.SIGINT, -signal.SIGINT)],
    ids=["SIGTERM", "SIGINT"],
)
def test_signal_during_sync_waits_for_the_sync_to_finish(
    tmp_path: Path, signum: int, status: int
) -> None:
    """A signal arriving mid-sync takes effect right after the sync, never inside it.

    The child's own handlers (installed before the POD) print what is on disk
    when they run; the sync is blocked in its first fsync (or fdatasync) until we say "go".
    """
    store = tmp_path / "store"
    body = code(
        HEAD,
        IMPORT,
        """
        def user_handler(signum, frame):
            with tastypy.POD(path, readonly=True) as ro:
                print("handler", json.dumps([[k, v] for k, v in ro.items()]), flush=True)
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            sys.exit(3)
        signal.signal(signal.SIGTERM, user_handler)
        signal.signal(signal.SIGINT, user_handler)
        """,
        SCENARIO,
        """
        pod = scenario()
        real_fsync, real_fdatasync = os.fsync, os.fdatasync
        def blocking(real):
            def block(fd):
                # block the first fsync or fdatasync of the sync only
                os.fsync, os.fdatasync = real_fsync, real_fdatasync
                print("in sync", flush=True)
                sys.stdin.readline()
                print("resumed", flush=True)
                real(fd)
            return block
        os.fsync, os.fdatasync = blocking(real_fsync), blocking(real_fdatasync)
        pod.sync()
        print("after sync", flush=True)
        """,
    )
    with Child(body, str(store)) as child:
        child.expect("in sync")
        # Written but not yet fsynced: readers may see either state, never a mix.
        assert read_store(store) in (SYNCED, FINAL)
        child.signal(signum)
        child.send()
        child.expect("resumed")  # the handler did not run inside the sync ...
        handler, _, seen = child.readline().partition(" ")
        assert handler == "handler"  # ... but right after it, the sync complete
        assert json.loads(seen) == as_json(FINAL)
        assert child.finish() == status, child.stderr
        assert "after sync" not in child.stdout  # the signal acted before sync() returned
        assert "could not sync" not in child.stderr
    assert read_store(store) == FINAL


# -- garbage collection ---------------------------------------------------------------


def test_garbage_collected_pod_syncs_and_unlocks_while_process_lives(tmp_path: Path) -> None:
    store = tmp_path / "store"
    body = code(
        HEAD,
        IMPORT,
        SCENARIO,
        "pod = scenario()",
        "del pod",
        "gc.collect()",
        "print('collected', flush=True)",
        "sys.stdin.readline()",
    )
    with Child(body, str(store)) as child:
        child.expect("collected")
        assert child.alive()
        assert read_store(store) == FINAL
        # collected means closed: the write lock is free while the child lives
        with tastypy.POD(store) as pod:
            assert list(pod.items()) == FINAL
        assert child.alive()
        assert child.finish() == 0, child.stderr
        assert child.stderr == ""
    assert read_store(store) == FINAL


# -- threads ------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["exit", "sigterm"])
def test_pod_created_in_other_thread_syncs_at_exit(tmp_path: Path, how: str) -> None:
    store = tmp_path / "store"
    body = code(
        HEAD,
        IMPORT,
        SCENARIO,
        """
        box = []
        def work():
            pod = scenario()
            pod["thread"] = threading.current_thread().name
            box.append(pod)
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(pod))  # no GC at shutdown
        t = threading.Thread(target=work, name="worker")
        t.start()
        t.join()
        assert box, "the worker thread failed"
        print("ready", flush=True)
        sys.stdin.readline()
        """,
    )
    with Child(body, str(store)) as child:
        child.expect("ready")
        assert read_store(store) == SYNCED
        if how == "exit":
            child.send()
            assert child.finish() == 0, child.stderr
        else:
            child.signal(signal.SIGTERM)
            assert child.finish() == -signal.SIGTERM, child.stderr
        assert child.stderr == ""
    assert read_store(store) == [*FINAL, ("thread", "worker")]


# -- SIGKILL --------------------------------------------------------------------------


def test_sigkill_after_sync_keeps_exactly_that_sync(tmp_path: Path) -> None:
    store = tmp_path / "store"
    body = code(
        HEAD,
        IMPORT,
        SCENARIO,
        """
        pod = scenario()
        pod.sync()
        pod["e"] = 5
        pod["a"] = 99
        del pod["c"]
        print("ready", flush=True)
        sys.stdin.readline()
        """,
    )
    with Child(body, str(store)) as child:
        child.expect("ready")
        child.signal(signal.SIGKILL)
        assert child.finish() == -signal.SIGKILL
    assert read_store(store) == FINAL
    with tastypy.POD(store) as pod:  # reopening for writing sees the same
        assert list(pod.items()) == FINAL


def test_sigkill_after_auto_sync_keeps_the_auto_synced_keys(tmp_path: Path) -> None:
    store = tmp_path / "store"
    body = code(
        HEAD,
        IMPORT,
        """
        pod = tastypy.POD(path, sync_at=3)
        pod["k1"] = 1
        pod["k0"] = 0
        print("two", flush=True)
        sys.stdin.readline()
        pod["k2"] = [2]   # the 3rd dirty key: auto-sync
        pod["k3"] = 3     # dirty again, not synced
        print("ready", flush=True)
        sys.stdin.readline()
        """,
    )
    with Child(body, str(store)) as child:
        child.expect("two")
        assert read_store(store) == []  # below sync_at: nothing synced yet
        child.send()
        child.expect("ready")
        assert read_store(store) == [("k1", 1), ("k0", 0), ("k2", [2])]
        child.signal(signal.SIGKILL)
        assert child.finish() == -signal.SIGKILL
    assert read_store(store) == [("k1", 1), ("k0", 0), ("k2", [2])]


# -- hold -----------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["exit", "sigterm"])
def test_hold_suspends_auto_sync_but_exit_syncs_everything(tmp_path: Path, how: str) -> None:
    store = tmp_path / "store"
    body = code(
        HEAD,
        IMPORT,
        """
        pod = tastypy.POD(path, sync_at=2)
        pod["pre"] = 0
        pod.sync()
        pod.hold()
        for key in ["zed", "alpha", "mid", "beta", "omega"]:
            pod[key] = key.upper()
        pod["zed"] = "changed"
        del pod["mid"]
        assert pod.held
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(pod))  # no GC at shutdown
        print("ready", flush=True)
        sys.stdin.readline()
        """,
    )
    with Child(body, str(store)) as child:
        child.expect("ready")
        assert read_store(store) == [("pre", 0)]  # 6 dirty keys, sync_at=2, held
        if how == "exit":
            child.send()
            assert child.finish() == 0, child.stderr
        else:
            child.signal(signal.SIGTERM)
            assert child.finish() == -signal.SIGTERM, child.stderr
        assert child.stderr == ""
    assert read_store(store) == [
        ("pre", 0),
        ("zed", "changed"),
        ("alpha", "ALPHA"),
        ("beta", "BETA"),
        ("omega", "OMEGA"),
    ]


# -- fork -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("child_exit", "child_status"),
    [
        pytest.param("sys.exit(0)", 0, id="sys.exit"),
        pytest.param("raise RuntimeError('child fails')", 1, id="exception"),
        pytest.param(
            "os.kill(os.getpid(), signal.SIGTERM); time.sleep(60)", -signal.SIGTERM, id="sigterm"
        ),
    ],
)
def test_forked_child_never_writes_parents_store(
    tmp_path: Path, child_exit: str, child_status: int
) -> None:
    store = tmp_path / "store"
    fork = """
        pod = tastypy.POD(path)
        pod["x"] = 1
        pod["y"] = 2
        pod.sync()
        pod["pre"] = "dirty before fork"
        pod["x"] = 100
        pid = os.fork()
        if pid == 0:
            for change in (lambda: pod.__setitem__("child", 1), lambda: pod.__delitem__("y")):
                try:
                    change()  # refused: the parent's POD takes no changes in a child
                except tastypy.LockedError:
                    continue
                os._exit(99)
            CHILD_EXIT
        pod["later"] = "parent after fork"
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status), flush=True)
        sys.stdin.readline()
    """
    body = code(HEAD, IMPORT, fork.replace("CHILD_EXIT", child_exit))
    with Child(body, str(store)) as child:
        assert child.readline() == f"child {child_status}"
        # the child ended and wrote nothing: neither its own changes nor the
        # parent's unsynced ones it inherited
        assert read_store(store) == [("x", 1), ("y", 2)]
        # nor did it release the parent's lock
        with pytest.raises(tastypy.LockedError, match=f"process {child.pid} "):
            tastypy.POD(store)
        child.send()
        assert child.finish() == 0, child.stderr
        assert "could not sync" not in child.stderr
    assert read_store(store) == [
        ("x", 100),
        ("y", 2),
        ("pre", "dirty before fork"),
        ("later", "parent after fork"),
    ]
