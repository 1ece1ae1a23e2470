from __future__ import annotations

import collections
import datetime
import enum
import json
import math
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

import tastypy
from tastypy._codec import check_new_key, decode_value, encode_value, normalize_key


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("a", "a"),
        (1, "1"),
        (-7, "-7"),
        (1.5, "1.5"),
        (1e20, "1e+20"),
        (True, "true"),
        (False, "false"),
        (None, "null"),
        (math.nan, "NaN"),
        (math.inf, "Infinity"),
        (-math.inf, "-Infinity"),
    ],
)
def test_keys_convert_like_json_object_keys(key: object, expected: str) -> None:
    import json

    assert normalize_key(key) == expected
    assert json.loads(json.dumps({key: 0})) == {expected: 0}


@pytest.mark.parametrize("key", [(1, 2), b"bytes", frozenset(), object(), [1]])
def test_other_key_types_are_refused(key: object) -> None:
    with pytest.raises(TypeError, match="keys must be str, int, float, bool or None"):
        normalize_key(key)


def test_lone_surrogate_key_is_refused() -> None:
    check_new_key("plain")
    check_new_key("ünïcødé ✓")
    with pytest.raises(TypeError, match="surrogate"):
        check_new_key("bad\udc80")


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        2**63 - 1,
        -(2**63),
        2**64 - 1,
        1.25,
        "text ✓",
        [1, [2, [3]]],
        {"a": {"b": [None, False]}},
    ],
)
def test_values_round_trip_exactly(value: object) -> None:
    assert decode_value(encode_value(value)) == value


def test_json_conversions_match_the_json_module() -> None:
    import json

    value = {"t": (1, 2), "d": {1: "a", None: "b", 2.5: "c", False: "d"}}
    assert decode_value(encode_value(value)) == json.loads(json.dumps(value))


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        [1.0, math.inf],
        {"x": {"y": -math.inf}},
        2**64,
        -(2**63) - 1,
        {1, 2},
        b"bytes",
        object(),
        datetime.date(2026, 1, 1),
        datetime.datetime(2026, 1, 1, 12, 0),
        {"k": {(1, 2): 3}},
    ],
)
def test_values_json_cannot_hold_exactly_are_refused(value: object) -> None:
    with pytest.raises(TypeError):
        encode_value(value)


def test_circular_value_is_refused() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(TypeError):
        encode_value(loop)
    nested: dict[object, object] = {1: None}
    nested[2] = nested
    with pytest.raises(TypeError):
        encode_value(nested)


def test_null_text_does_not_trip_the_nan_check() -> None:
    assert decode_value(encode_value({"s": "null", "n": None})) == {"s": "null", "n": None}


def test_uuid_and_enum_members_are_written_as_their_values() -> None:
    class Colour(enum.Enum):
        RED = "red"

    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert decode_value(encode_value([u, Colour.RED])) == [str(u), "red"]


def _reordered() -> collections.OrderedDict[str, object]:
    value: collections.OrderedDict[str, object] = collections.OrderedDict(a=1, b=2, c=3)
    value.move_to_end("a")
    value.move_to_end("c", last=False)
    return value  # c, b, a


@pytest.mark.parametrize(
    "wrap",
    [
        lambda v: v,
        lambda v: {"deep": [{"x": v}]},
        lambda v: [v, (v,)],
        lambda v: collections.OrderedDict(z=v),
    ],
)
def test_ordered_dicts_keep_their_order_at_any_depth(tmp_path: Path, wrap: Any) -> None:
    value = wrap(_reordered())
    expected = json.loads(json.dumps(value))  # the json module follows iteration order
    with tastypy.POD(tmp_path / "s") as pod:
        pod["set"] = value
        pod["read"] = {}
    with tastypy.POD(tmp_path / "s") as pod:
        assert json.dumps(pod["set"]) == json.dumps(expected)
        pod["read"] = value
        _ = pod["read"]  # read again: the sync encodes the value itself
    with tastypy.POD(tmp_path / "s", readonly=True) as pod:
        assert json.dumps(pod["read"]) == json.dumps(expected)


def test_subclasses_of_builtins_are_stored_as_their_base_values() -> None:
    class Text(str):
        pass

    class Number(int):
        pass

    class Items(list):  # type: ignore[type-arg]
        pass

    value = {Text("k"): [Text("v"), Number(7), Items([1, 2]), collections.defaultdict(int, a=1)]}
    assert decode_value(encode_value(value)) == {"k": ["v", 7, [1, 2], {"a": 1}]}


@pytest.mark.parametrize(
    ("value", "clash"),
    [
        ({1: "a", "1": "b"}, "'1'"),
        ({"x": [{True: 1, "true": 2}]}, "'true'"),
        ({"n": {None: 1, "null": 2}}, "'null'"),
        ([{1.5: 0, "1.5": 1}], "'1.5'"),
    ],
)
def test_dict_keys_that_become_the_same_json_key_are_refused(
    tmp_path: Path, value: object, clash: str
) -> None:
    with pytest.raises(TypeError, match=re.escape(clash)):
        encode_value(value)
    with tastypy.POD(tmp_path / "s") as pod:
        with pytest.raises(TypeError, match=re.escape(clash)):
            pod["k"] = value
        assert "k" not in pod
        pod["k"] = {"1": "b"}
        pod["k"][1] = "a"  # smuggled in: the sync refuses it and keeps the store
        with pytest.raises(TypeError, match="'1'"):
            pod.sync()
        del pod["k"][1]
    with tastypy.POD(tmp_path / "s", readonly=True) as pod:
        assert pod["k"] == {"1": "b"}
