"""`--at` (and the events filters' --since/--until) read the same forms on every Python:
one parser of our own, not datetime.fromisoformat (3.10 refuses forms 3.11 takes)."""

from __future__ import annotations

import pytest

from hamustro_cli.errors import InputError
from hamustro_cli.events import check_at, parse_time

NOON = 1795867200  # 2026-11-28T12:00:00Z


@pytest.mark.parametrize(
    "text",
    [
        "1795867200",
        "1795867200.123456789",  # date +%s.%N
        "1795867200.999999999",  # truncated, never rounded up into the next second
        "1795867200.",
        "2026-11-28T12:00:00Z",
        "2026-11-28t12:00:00z".replace("t", "T"),
        "2026-11-28T12:00:00+00:00",
        "2026-11-28 12:00:00Z",
        "2026-11-28T12:00Z",
        "2026-11-28T12Z",
        "2026-11-28T12:00:00.5Z",
        "2026-11-28T12:00:00.123456789Z",  # nanoseconds: 3.10 refuses more than 6 digits
        "2026-11-28T12:00:00,25Z",
        "2026-11-28T13:00:00+01:00",
        "2026-11-28T13:00:00+0100",
        "2026-11-28T13:00:00+01",
        "2026-11-28T10:30:00-01:30",
        "20261128T120000Z",  # basic format
        "20261128T130000+0100",
        "2026-11-28T12:00:00",  # naive: UTC
        "2026-W48-6T12:00:00Z",  # week date: Saturday of ISO week 48
        "2026W486T120000Z",
        "2026-332T12:00:00Z",  # ordinal date
        "  2026-11-28T12:00:00Z  ",
    ],
)
def test_same_instant(text: str) -> None:
    assert parse_time(text) == NOON
    assert check_at(text) == NOON


def test_date_alone_is_midnight_utc() -> None:
    assert parse_time("2026-11-28") == NOON - 12 * 3600
    assert parse_time("20261128") == 20261128  # digits alone are epoch seconds, as always


@pytest.mark.parametrize(
    "text",
    [
        "yesterday",
        "2026-13-01T00:00:00Z",
        "2026-02-30",
        "2026-11-28T24:00:00Z",
        "2026-11-28T12:60:00Z",
        "2026-11-28T12:00:61Z",
        "2026-11-28T12:00:00+25:00",
        "2026-W54-1",
        "2026-366",  # 2026 is not a leap year
        "2026-11-28T12:00:00ZZ",
        "2026-1128",
        "1795867200.5.5",
        "-5",
        "\u00b2",
        "",
        "2026-11-28T",
    ],
)
def test_refused_with_the_flag_named(text: str) -> None:
    with pytest.raises(InputError) as info:
        check_at(text, "--since")
    assert str(info.value).startswith("--since")


def test_leap_day_ordinal() -> None:
    assert parse_time("2028-366") == parse_time("2028-12-31")


def test_before_1970_refused_by_check_at() -> None:
    assert parse_time("1969-12-31T23:59:59Z") == -1
    with pytest.raises(InputError):
        check_at("1969-12-31T23:59:59Z")
