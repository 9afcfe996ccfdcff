"""parse_lines' fast path and its thorough path agree on every line."""

from __future__ import annotations

import json

import pytest

from hamustro_cli.errors import InputError
from hamustro_cli.events import AT_MAX, MAX_EVENT_BYTES, MAX_PARAMS_BYTES, _parse_line, parse_lines

GOOD = [
    {"event": "a"},
    {"event": "page_view", "user_id": 0, "params": {"k": 1, "nested": [1, "x"]}, "is_testing": True, "at": 0},
    {"event": "x" * MAX_EVENT_BYTES, "user_id": 2**32 - 1, "params": "p" * MAX_PARAMS_BYTES, "at": AT_MAX},
    {"event": "ünïcode €", "params": {"ключ": "значение"}},
    {"event": " spaced ", "is_testing": False},
]
BAD = [
    {"event": ""},
    {"event": "   "},
    {"event": "x" * (MAX_EVENT_BYTES + 1)},
    {"event": "a", "user_id": -1},
    {"event": "a", "user_id": 2**32},
    {"event": "a", "user_id": True},
    {"event": "a", "user_id": "7"},
    {"event": "a", "is_testing": 1},
    {"event": "a", "at": -1},
    {"event": "a", "at": 2**63},
    {"event": "a", "at": AT_MAX + 1},
    {"event": "a", "at": 1.5},
    {"event": "a", "params": "p" * (MAX_PARAMS_BYTES + 1)},
    {"event": "a", "params": ["list"]},
    {"event": "a", "extra": 1},
    {"user_id": 1},
    {"event": 5},
]


@pytest.mark.parametrize("obj", GOOD, ids=range(len(GOOD)))
def test_good_lines_parse_the_same_both_ways(obj):
    for line in (json.dumps(obj) + "\n", "  " + json.dumps(obj, ensure_ascii=False) + "  \n"):
        fast = parse_lines([line], 123, "192.0.2.1")
        slow = _parse_line(line, "stdin line 1", 123, "192.0.2.1")
        assert [tuple(x) for x in fast] == [tuple(slow)]


@pytest.mark.parametrize("obj", BAD, ids=range(len(BAD)))
def test_bad_lines_are_refused_both_ways(obj):
    line = json.dumps(obj) + "\n"
    with pytest.raises(InputError) as fast:
        parse_lines(['{"event": "fine"}\n', line], 1, None)
    assert "stdin line 2" in str(fast.value)
    with pytest.raises(InputError):
        _parse_line(line, "stdin line 2", 1, None)


def test_trailing_garbage_and_blank_lines():
    with pytest.raises(InputError, match="line 1: not valid JSON"):
        parse_lines(['{"event": "a"} x\n'], 1, None)
    assert len(parse_lines(["\n", '{"event": "a"}\n', "   \n"], 1, None)) == 1


@pytest.mark.parametrize("number", ["1e999", "-1e999", "[1, 1e400]"])
def test_a_number_beyond_float_range_in_params_is_refused_both_ways(number):
    """`1e999` is valid JSON that parses to infinity; stored, it would become `Infinity`, which
    is not JSON (the fast path used to write just that)."""
    line = f'{{"event": "a", "params": {{"x": {number}}}}}\n'
    with pytest.raises(InputError, match="stdin line 1: params: cannot be written as JSON"):
        parse_lines([line], 1, None)
    with pytest.raises(InputError, match="params: cannot be written as JSON"):
        _parse_line(line, "stdin line 1", 1, None)
