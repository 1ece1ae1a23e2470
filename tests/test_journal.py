"""The journal format, property-tested: prefixes replay, damage is caught."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tastypy import CorruptStoreError
from tastypy.storage.files._journal import commit_bytes, replay

records = st.lists(
    st.builds(lambda k, v: b'["k%d",%d]' % (k, v), st.integers(0, 50), st.integers()),
    max_size=4,
)
journals = st.lists(records, max_size=6)
PATH = Path("journal-00000000.jsonl")


def _encode(commits: list[list[bytes]], gzipped: bool) -> bytes:
    return b"".join(commit_bytes(c, n + 1, gzipped) for n, c in enumerate(commits))


@pytest.mark.parametrize("gzipped", [False, True])
@settings(max_examples=150, deadline=None)
@given(commits=journals, data=st.data())
def test_every_prefix_replays_to_whole_commits(
    gzipped: bool, commits: list[list[bytes]], data: st.DataObject
) -> None:
    raw = _encode(commits, gzipped)
    full = replay(PATH, raw, gzipped)
    assert full.commits == len(commits)
    assert full.torn == 0
    assert full.ops == [line for c in commits for line in c]
    cut = data.draw(st.integers(0, len(raw)))
    part = replay(PATH, raw[:cut], gzipped)
    assert part.end + part.torn == cut
    assert part.ops == [line for c in commits[: part.commits] for line in c]


@pytest.mark.parametrize("gzipped", [False, True])
@settings(max_examples=150, deadline=None)
@given(commits=journals.filter(lambda c: len(c) >= 2 and any(c[:-1])), data=st.data())
def test_a_flipped_byte_before_the_last_commit_is_damage(
    gzipped: bool, commits: list[list[bytes]], data: st.DataObject
) -> None:
    raw = bytearray(_encode(commits, gzipped))
    last_start = len(_encode(commits[:-1], gzipped))
    first = 10 if gzipped else 0  # gzip readers ignore header bytes such as mtime
    at = data.draw(st.integers(first, last_start - 1))
    if gzipped and at < len(_encode(commits[:1], gzipped)) and at < 10:
        return
    bit = data.draw(st.sampled_from([1, 2, 4, 8, 16, 32, 64, 128]))
    raw[at] ^= bit
    try:
        result = replay(PATH, bytes(raw), gzipped)
    except CorruptStoreError as exc:
        message = str(exc)
    else:
        message = ""
    if message:
        assert PATH.name in message
        return
    # Not raised: only possible if the flip made no difference to any commit
    # (e.g. in a gzip header field readers ignore); then nothing may be lost.
    assert result.ops == [line for c in commits for line in c]


KEYS = ["a", 'x"y', "back\\slash", "ünï ✓", "\n", '"]', 'end"', "", "a\\", "\u2028"]


@pytest.mark.parametrize("key", KEYS)
def test_compaction_reads_keys_and_deletes_without_decoding(key: str) -> None:
    import orjson

    from tastypy.storage.files._journal import is_delete, journal_keys

    lines = [orjson.dumps([key, v]) for v in (1, None, 'v"]', "x", ['"]'], {"k": '"]'})]
    lines.append(orjson.dumps([key]))
    commits = [commit_bytes(lines[:3], 1, False), commit_bytes(lines[3:], 2, False)]
    assert journal_keys(commits, len(lines)) == ([key] * len(lines), True)
    sets_only = [commit_bytes(lines[:-1], 1, False)]
    assert journal_keys(sets_only, len(lines) - 1) == ([key] * (len(lines) - 1), False)
    assert [is_delete(line) for line in lines] == [False] * (len(lines) - 1) + [True]


class _CountingInflater:
    """A zlib decompressor that counts the bytes it is fed."""

    fed = 0

    def __init__(self, wbits: int) -> None:
        import zlib

        self._inflater = zlib.decompressobj(wbits)

    def decompress(self, data: bytes | memoryview) -> bytes:
        _CountingInflater.fed += len(data)
        return self._inflater.decompress(data)

    @property
    def eof(self) -> bool:
        return self._inflater.eof

    @property
    def unused_data(self) -> bytes:
        return self._inflater.unused_data


@pytest.mark.parametrize("commits", [500, 2000])
def test_replaying_a_gzipped_journal_reads_each_byte_a_bounded_number_of_times(
    monkeypatch: pytest.MonkeyPatch, commits: int
) -> None:
    import types
    import zlib

    from tastypy.storage.files import _commits

    raw = _encode([[b'["k%d",%d]' % (n, n)] for n in range(commits)], True)
    raw += commit_bytes([b'["torn",1]'], commits + 1, True)[:-3]
    shim = types.SimpleNamespace(**{**vars(zlib), "decompressobj": _CountingInflater})
    monkeypatch.setattr(_commits, "zlib", shim)
    _CountingInflater.fed = 0
    result = replay(PATH, raw, True)
    monkeypatch.undo()
    assert result.commits == commits and result.torn > 0
    # Linear: a member is fed at most about twice its size plus one first
    # block (512 bytes), never the rest of the file after it, which made
    # replay quadratic (for 2,000 commits: 1,000 times the journal's size).
    bound = 3 * len(raw) + 512 * (commits + 1)
    assert _CountingInflater.fed <= bound, (_CountingInflater.fed, len(raw))
