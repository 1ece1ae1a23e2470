"""Side logs (the tracker's tries log) and discard(), the same on every engine."""

from __future__ import annotations

import pytest

from tastypy.errors import ReadOnlyError

from _engines import Engine


def test_a_side_log_keeps_its_lines_across_a_reopen(engine: Engine) -> None:
    storage = engine.open()
    storage.load()
    log = storage.side_log("tries")
    assert log.empty
    assert log.read() == b""
    log.append(b'["a",1]\n')
    log.append(b'["b",2]\n')
    log.flush()
    assert not log.empty
    assert log.read() == b'["a",1]\n["b",2]\n'
    log.close()
    storage.close()  # a writer that ends without a sync leaves the lines

    again = engine.open()
    again.load()
    log = again.side_log("tries")
    assert not log.empty
    assert log.read() == b'["a",1]\n["b",2]\n'
    log.append(b'["c",3]\n')
    assert log.read() == b'["a",1]\n["b",2]\n["c",3]\n'
    log.close()
    again.close()


def test_a_cleared_side_log_is_empty_after_a_reopen(engine: Engine) -> None:
    storage = engine.open()
    storage.load()
    log = storage.side_log("tries")
    log.append(b'["a",1]\n')
    log.clear()
    assert log.empty
    assert log.read() == b""
    log.append(b'["b",1]\n')  # and it takes new lines
    assert log.read() == b'["b",1]\n'
    log.clear()
    log.close()
    storage.close()
    again = engine.open()
    log = again.side_log("tries")
    assert log.empty
    assert log.read() == b""
    log.close()


def test_side_logs_of_other_names_are_apart(engine: Engine) -> None:
    storage = engine.open()
    storage.load()
    tries, other = storage.side_log("tries"), storage.side_log("claims")
    tries.append(b"1\n")
    other.append(b"2\n")
    other.clear()
    assert tries.read() == b"1\n"
    assert other.read() == b""
    tries.close()
    other.close()


def test_a_reader_reads_a_writers_side_log(engine: Engine) -> None:
    writer = engine.open()
    writer.load()
    log = writer.side_log("tries")
    log.append(b'["a",1]\n')
    reader = engine.open(readonly=True)
    seen = reader.side_log("tries")
    assert seen.read() == b'["a",1]\n'
    log.append(b'["a",2]\n')
    assert seen.read() == b'["a",1]\n["a",2]\n'  # each read sees what was appended
    seen.close()
    log.close()


def test_a_read_only_side_log_refuses_changes(engine: Engine) -> None:
    """As ``commit`` and ``set_meta`` do on a read-only open: ReadOnlyError, nothing changed."""
    writer = engine.open()
    writer.load()
    log = writer.side_log("tries")
    log.append(b'["a",1]\n')
    log.close()
    writer.close()
    reader = engine.open(readonly=True)
    seen = reader.side_log("tries")
    with pytest.raises(ReadOnlyError):
        seen.append(b'["b",1]\n')
    with pytest.raises(ReadOnlyError):
        seen.clear()
    seen.close()
    assert engine.open(readonly=True).side_log("tries").read() == b'["a",1]\n'


def test_a_side_log_append_whose_io_fails_appends_nothing(engine: Engine) -> None:
    if not engine.has_io:
        pytest.skip(f"the {engine.name} engine does no I/O that could fail")
    storage = engine.open()
    storage.load()
    log = storage.side_log("tries")
    log.append(b'["a",1]\n')
    with engine.failing_io(), pytest.raises(OSError, match="injected"):
        log.append(b'["b",1]\n')
    assert log.read() == b'["a",1]\n'
    log.append(b'["c",1]\n')
    assert log.read() == b'["a",1]\n["c",1]\n'
    log.close()


def test_discard_removes_a_store_this_open_made(engine: Engine) -> None:
    storage = engine.open()
    storage.set_meta({"kind": "tracker"})
    storage.commit([("a", b"1")])
    storage.side_log("tries").append(b'["a",1]\n')
    storage.discard()
    again = engine.open()
    assert again.load() == {}
    assert again.meta == {}
    assert again.side_log("tries").read() == b""


def test_discard_refuses_a_store_this_open_did_not_make(engine: Engine) -> None:
    first = engine.open()
    first.set_meta({"kind": "pod"})
    first.commit([("a", b"1")])
    first.close()
    second = engine.open()
    second.load()
    with pytest.raises(RuntimeError, match="discard"):
        second.discard()
    second.close()
    reader = engine.open(readonly=True)
    assert reader.load() == {"a": 1}
    assert reader.meta == {"kind": "pod"}
