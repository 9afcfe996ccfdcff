"""What one event is, and the rules it must pass: pure checks of the values given on the
command line, through the Python API or as `--stdin` JSON lines. No I/O.

Every error is an InputError naming the value and where it came from (flag, key, line)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from hamustro_cli import netaddr
from hamustro_cli.errors import InputError

if TYPE_CHECKING:
    import re

MAX_EVENT_BYTES = 1024
MAX_PARAMS_BYTES = 64 * 1024
UINT32_MAX = 2**32 - 1
AT_MAX = 2**63 - 1  # `at` is a uint64 on the wire, but the spool stores it as SQLite's signed INTEGER


class NewEvent(NamedTuple):
    """An event to queue. A NamedTuple, not a dataclass: far cheaper to define, which `track`
    pays on every call."""

    event: str
    at: int
    user_id: int | None = None
    ip: str | None = None
    parameters: str | None = None
    is_testing: bool = False


def check_event_name(event: Any, where: str = "event name") -> str:
    if not isinstance(event, str):
        raise InputError(f"{where}: expected a string, got {type(event).__name__}")
    if not event.strip():
        raise InputError(f"{where}: must not be empty")
    if len(event.encode("utf-8", "surrogatepass")) > MAX_EVENT_BYTES:
        raise InputError(f"{where}: longer than {MAX_EVENT_BYTES} bytes")
    _check_utf8(event, where)
    return event


def _check_utf8(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{where}: not valid UTF-8 text") from None


def check_user_id(value: Any, where: str = "--user-id") -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] in "+-" else text
        if not (digits.isascii() and digits.isdigit()):
            raise InputError(f"{where}: expected a whole number from 0 to {UINT32_MAX}, got {value!r}")
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{where}: expected a whole number from 0 to {UINT32_MAX}, got {value!r}")
    if not 0 <= value <= UINT32_MAX:
        raise InputError(f"{where}: {value} is outside 0..{UINT32_MAX} (user_id is a uint32)")
    return value


def check_params(value: Any, where: str = "--params") -> str | None:
    """A string goes as is; a mapping becomes a compact JSON object string."""
    if value is None:
        return None
    if type(value) is dict or isinstance(value, Mapping):
        import json

        value = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=False)
    if not isinstance(value, str):
        raise InputError(f"{where}: expected a string or a JSON object, got {type(value).__name__}")
    _check_utf8(value, where)
    size = len(value.encode("utf-8"))
    if size > MAX_PARAMS_BYTES:
        raise InputError(f"{where}: {size} bytes, more than the limit of {MAX_PARAMS_BYTES} bytes")
    return value


def params_from_pairs(pairs: Iterable[str], where: str = "--param") -> str:
    obj: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"{where} {pair!r}: expected KEY=VALUE with a non-empty KEY")
        obj[key] = value
    return check_params(obj, where)  # type: ignore[return-value]


def check_at(value: Any, where: str = "--at") -> int:
    """Epoch seconds (UTC), from an integer or a time text (see `parse_time`)."""
    if isinstance(value, str):
        value = parse_time(value, where)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{where}: expected epoch seconds (a whole number), got {value!r}")
    if not 0 <= value <= AT_MAX:
        raise InputError(f"{where}: {value} is not a valid epoch time (0..2^63-1)")
    return value


_TIME_RE: re.Pattern[str] | None = None  # compiled on first use: `track` without --at never pays for re


def parse_time(text: str, where: str = "--at") -> int:
    """Epoch seconds from epoch seconds (`1764331200`, or fractional as `date +%s.%N` prints)
    or ISO 8601 (extended or basic, `T` or a space, fractions of any length, `Z`, `+01:00`,
    `+0100` or `+01`; calendar, ordinal or week dates; naive means UTC). Fractions of a second
    are truncated toward the past, like `date +%s`.

    One parser of our own, not datetime.fromisoformat: that accepts different forms on
    Python 3.10 and 3.11+, and `--at` must mean the same on each."""
    global _TIME_RE
    raw = text
    text = text.strip()
    if text.isascii() and text.isdigit():
        return int(text)
    if _TIME_RE is None:
        import re

        _TIME_RE = re.compile(
            r"(?P<year>\d{4})(?P<dsep>-?)"
            r"(?:W(?P<week>\d{2})(?P=dsep)(?P<wday>[1-7])|(?P<month>\d{2})(?P=dsep)(?P<day>\d{2})"
            r"|(?P<yday>\d{3}))"
            r"(?:[T ](?P<hour>\d{2})(?:(?P<tsep>:?)(?P<minute>\d{2})(?:(?P=tsep)(?P<second>\d{2})"
            r"(?:[.,](?P<frac>\d+))?)?)?"
            r"(?P<tz>[Zz]|[+-]\d{2}(?::?\d{2})?)?)?",
            re.ASCII,
        )
    epoch = _epoch_fraction(text)
    if epoch is not None:
        return epoch
    m = _TIME_RE.fullmatch(text)
    if m is None:
        raise InputError(
            f"{where}: expected epoch seconds or an ISO 8601 time (2026-11-28T12:00:00Z), got {raw!r}"
        )
    from datetime import date, datetime, timedelta, timezone

    g = m.group
    try:
        year = int(g("year"))
        if g("week"):
            day = date.fromisocalendar(year, int(g("week")), int(g("wday")))
        elif g("yday"):
            yday = int(g("yday"))
            if not 1 <= yday <= (366 if date(year, 12, 31).timetuple().tm_yday == 366 else 365):
                raise ValueError("day of year out of range")
            day = date(year, 1, 1) + timedelta(days=yday - 1)
        else:
            day = date(year, int(g("month")), int(g("day")))
        tz = timezone.utc
        offset = g("tz")
        if offset and offset not in "Zz":
            digits = offset[1:].replace(":", "")
            hours, minutes = int(digits[:2]), int(digits[2:] or 0)
            if hours > 23 or minutes > 59:
                raise ValueError("offset out of range")
            delta = timedelta(hours=hours, minutes=minutes)
            tz = timezone(-delta if offset[0] == "-" else delta)
        moment = datetime(
            day.year,
            day.month,
            day.day,
            int(g("hour") or 0),
            int(g("minute") or 0),
            int(g("second") or 0),
            tzinfo=tz,
        )
    except (ValueError, OverflowError) as exc:
        raise InputError(f"{where}: {raw!r} is not a valid time ({exc})") from None
    seconds = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return seconds.days * 86400 + seconds.seconds


def _epoch_fraction(text: str) -> int | None:
    """`1764331200.123456789` (as `date +%s.%N` prints): whole seconds, truncated."""
    whole, dot, frac = text.partition(".")
    if dot and whole.isascii() and whole.isdigit() and (not frac or (frac.isascii() and frac.isdigit())):
        return int(whole)
    return None


def check_ip(value: str, where: str = "--ip") -> str:
    if not netaddr.valid_ip(value):
        raise InputError(f"{where}: {value!r} is not an IPv4 or IPv6 address")
    return value


STDIN_KEYS = frozenset({"event", "user_id", "params", "is_testing", "at"})


def parse_lines(
    lines: Iterable[str], default_at: int, ip: str | None, source: str = "stdin"
) -> list[NewEvent]:
    """JSON lines into events; all or nothing: the first bad line raises with its number.

    A line of the common shape (ASCII text, values in range) takes a fast path that checks the
    same rules with cheap tests; anything else goes through `_parse_line`, which checks
    thoroughly and says exactly what is wrong. The rows are plain tuples laid out as NewEvent."""
    import json

    scan = json.JSONDecoder().scan_once  # the C scanner, without json.loads' two Python frames
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    events: list[Any] = []
    append = events.append
    keys = STDIN_KEYS
    for number, line in enumerate(lines, 1):
        try:
            obj, end = scan(line, 0)
        except (StopIteration, ValueError):
            obj = None
        if type(obj) is dict and obj.keys() <= keys and (end == len(line) or not line[end:].strip()):
            event = obj.get("event")
            user_id = obj.get("user_id")
            testing = obj.get("is_testing", False)
            at = obj.get("at", default_at)
            params = obj.get("params")
            if type(params) is dict:
                params = encode(params)
            if (
                type(event) is str
                and event.isascii()
                and 0 < len(event) <= MAX_EVENT_BYTES
                and not event.isspace()
                and (user_id is None or (type(user_id) is int and 0 <= user_id <= UINT32_MAX))
                and (testing is False or testing is True)
                and type(at) is int
                and 0 <= at <= AT_MAX
                and (
                    params is None
                    or (type(params) is str and params.isascii() and len(params) <= MAX_PARAMS_BYTES)
                )
            ):
                append((event, at, user_id, ip, params, testing))
                continue
        if not line.strip():
            continue
        append(_parse_line(line, f"{source} line {number}", default_at, ip))
    return events


def _parse_line(line: str, where: str, default_at: int, ip: str | None) -> NewEvent:
    import json

    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise InputError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if obj.keys() - STDIN_KEYS:
        unknown = ", ".join(sorted(obj.keys() - STDIN_KEYS))
        raise InputError(f"{where}: unknown key {unknown} (allowed: {', '.join(sorted(STDIN_KEYS))})")
    if "event" not in obj:
        raise InputError(f"{where}: missing key 'event'")
    event = check_event_name(obj["event"], f"{where}: event")
    testing = obj.get("is_testing", False)
    if not isinstance(testing, bool):
        raise InputError(f"{where}: is_testing: expected true or false, got {testing!r}")
    user_id = obj.get("user_id")
    if isinstance(user_id, str):
        raise InputError(
            f"{where}: user_id: expected a JSON integer from 0 to {UINT32_MAX}, got the string {user_id!r}"
        )
    user_id = check_user_id(user_id, f"{where}: user_id")
    params = check_params(obj.get("params"), f"{where}: params")
    at = obj.get("at", default_at)
    if isinstance(at, str):
        raise InputError(f"{where}: at: expected epoch seconds (a whole number), got {at!r}")
    at = check_at(at, f"{where}: at")
    return NewEvent(event, at, user_id, ip, params, testing)
