"""What one event is, and the rules it must pass: pure checks of the values given on the
command line, through the Python API or as `--stdin` JSON lines. No I/O.

Every error is an InputError naming the value and where it came from (flag, key, line, or a
Python argument: the checks take `where`, and `python=True` for the types a Python caller
passes, an int `user_id`, string keys in `params`, a float `at`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from hamustro_cli import netaddr
from hamustro_cli.errors import InputError

if TYPE_CHECKING:
    import re

MAX_EVENT_BYTES = 1024
MAX_PARAMS_BYTES = 64 * 1024
UINT32_MAX = 2**32 - 1
SQLITE_INT_MAX = 2**63 - 1  # the largest INTEGER SQLite stores: ids, --limit and times are checked against it
# `at` is a uint64 on the wire, but the collector stores it as a date it formats with four-digit
# years (Go's time): later than 9999-12-31T23:59:59Z it stores 10000-01-01 or a year in the billions.
AT_MAX = 253_402_300_799
AT_RANGE = "1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z, 0 to 253402300799 epoch seconds"
SHOWN_MAX = 60  # characters of a user's value quoted in an error message


def shown(value: Any) -> str:
    """A user's value for an error message: one line (newlines and control characters escaped,
    as repr does), at most about SHOWN_MAX characters however large the value."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"a {value.bit_length()}-bit number"  # str() of a huge int is slow, or refused
    try:
        text = repr(value)
    except Exception:  # a caller's object whose repr fails
        return f"a {type(value).__name__}"
    if len(text) > SHOWN_MAX:
        return f"{text[:SHOWN_MAX]}... ({len(text)} characters)"
    return text


class NewEvent(NamedTuple):
    """An event to queue."""

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


def check_user_id(value: Any, where: str = "--user-id", *, python: bool = False) -> int | None:
    """A whole number 0..2^32-1; from the command line as its text, from Python an int only."""
    if value is None:
        return None
    if isinstance(value, str) and not python:
        text = value.strip()
        digits = text[1:] if text[:1] in "+-" else text
        if not (digits.isascii() and digits.isdigit()):
            raise InputError(f"{where}: expected a whole number from 0 to {UINT32_MAX}, got {shown(value)}")
        if len(digits) > 20:  # int() refuses thousands of digits; this is out of range anyway
            raise InputError(f"{where}: {len(digits)} digits, outside 0..{UINT32_MAX} (user_id is a uint32)")
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{where}: expected a whole number from 0 to {UINT32_MAX}, got {shown(value)}")
    if not 0 <= value <= UINT32_MAX:
        raise InputError(f"{where}: {shown(value)} is outside 0..{UINT32_MAX} (user_id is a uint32)")
    return value


def check_params(value: Any, where: str = "--params", *, python: bool = False) -> str | None:
    """A string goes as is; a mapping becomes a compact JSON object string. From Python, every
    key of a mapping (at any depth) must be a string: json would turn 1 into "1" unasked."""
    if value is None:
        return None
    if type(value) is dict or isinstance(value, Mapping):
        import json

        if python:
            _check_string_keys(value, where)
        try:
            value = json.dumps(
                value, ensure_ascii=False, separators=(",", ":"), sort_keys=False, allow_nan=False
            )
        except RecursionError:
            raise InputError(f"{where}: nested too deeply") from None
        except (TypeError, ValueError) as exc:  # a value JSON cannot hold: NaN, an object, a cycle
            raise InputError(f"{where}: cannot be written as JSON ({shown(str(exc))})") from None
    if not isinstance(value, str):
        raise InputError(f"{where}: expected a string or a JSON object, got {type(value).__name__}")
    _check_utf8(value, where)
    size = len(value.encode("utf-8"))
    if size > MAX_PARAMS_BYTES:
        raise InputError(f"{where}: {size} bytes, more than the limit of {MAX_PARAMS_BYTES} bytes")
    return value


def _check_string_keys(value: Any, where: str) -> None:
    """Every key of every mapping inside `value` is a string (each container visited once: a
    cycle is left for json to refuse)."""
    todo, seen = [value], set()
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        if isinstance(item, Mapping):
            seen.add(id(item))
            for key, inner in item.items():
                if not isinstance(key, str):
                    raise InputError(f"{where}: keys must be strings, got the key {shown(key)}")
                todo.append(inner)
        elif isinstance(item, (list, tuple)):
            seen.add(id(item))
            todo.extend(item)


def check_params_form(params: str | None, pairs: Iterable[str]) -> None:
    """--params TEXT and --param KEY=VALUE say the same thing two ways: one of them at most."""
    if params is not None and pairs:
        raise InputError("use either --params TEXT or --param KEY=VALUE, not both")


def params_from_pairs(pairs: Iterable[str], where: str = "--param") -> str:
    obj: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"{where} {shown(pair)}: expected KEY=VALUE with a non-empty KEY")
        if key in obj:  # as a key given twice on stdin: which one was meant is not ours to guess
            raise InputError(f"{where} {shown(pair)}: duplicate key {shown(key)} (give each KEY once)")
        obj[key] = value
    return check_params(_string_object(obj), where)  # type: ignore[return-value]


def _string_object(obj: dict[str, str]) -> str:
    """`json.dumps(obj, ensure_ascii=False, separators=(",", ":"))` for keys and values that are
    all strings, with json's own C quoting but without importing json, about 1 ms of the start
    of every `track --param` (json is loaded only where something must be parsed)."""
    try:
        from _json import encode_basestring as quote
    except ImportError:  # pragma: no cover - a Python without the json accelerator
        from json.encoder import py_encode_basestring as quote
    return "{" + ",".join(quote(key) + ":" + quote(value) for key, value in obj.items()) + "}"


def event_time(now: int, give: str, where: str = "") -> int:
    """`now` as the time of an event given without one: a clock before 1970 cannot date an
    event (`at` is unsigned on the wire), so it is refused before anything is queued."""
    if now < 0:
        raise InputError(
            f"{where}the system clock reads before 1970 ({now} s since 1970 UTC): "
            f"set the clock, or give the event's time with {give}"
        )
    return now


def check_at(value: Any, where: str = "--at", *, python: bool = False) -> int:
    """Epoch seconds (UTC), from an integer or a time text (see `parse_time`); from Python also
    a float (`time.time()`), truncated toward the past as a fractional text is."""
    if isinstance(value, str):
        value = parse_time(value, where)
    if python and isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise InputError(f"{where}: {shown(value)} is not a valid epoch time (0..2^63-1)")
        value = int(value // 1)
    if isinstance(value, bool) or not isinstance(value, int):
        expected = "an int or a float" if python else "a whole number"
        raise InputError(f"{where}: expected epoch seconds ({expected}), got {shown(value)}")
    if not 0 <= value <= AT_MAX:
        raise InputError(f"{where}: {shown(value)} is outside the times the collector stores ({AT_RANGE})")
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
        if len(text) > 20:  # int() refuses thousands of digits; this is out of range anyway
            raise InputError(
                f"{where}: {len(text)} digits is outside the times the collector stores ({AT_RANGE})"
            )
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
            f"{where}: expected epoch seconds or an ISO 8601 time (2026-11-28T12:00:00Z), got {shown(raw)}"
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
        raise InputError(f"{where}: {shown(raw)} is not a valid time ({exc})") from None
    seconds = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return seconds.days * 86400 + seconds.seconds


def _epoch_fraction(text: str) -> int | None:
    """`1764331200.123456789` (as `date +%s.%N` prints): whole seconds, truncated."""
    whole, dot, frac = text.partition(".")
    if dot and whole.isascii() and whole.isdigit() and (not frac or (frac.isascii() and frac.isdigit())):
        return int(whole) if len(whole) <= 20 else 2**64  # out of range either way: check_at says so
    return None


def check_ip(value: str, where: str = "--ip", ipv6: bool = True) -> str:
    """An address given to send as `ip`, IPv4-mapped ones as IPv4. An IPv6 address, which the
    collector stores whole (its masked_ip masks IPv4 only), only when `ipv6` (send_ipv6)."""
    if not netaddr.valid_ip(value):
        raise InputError(f"{where}: {shown(value)} is not an IPv4 or IPv6 address")
    mapped = netaddr.as_ipv4(value)
    if mapped is not None:
        return mapped
    if not ipv6:
        raise InputError(
            f"{where}: {shown(value)} is an IPv6 address, which the collector stores whole (it masks "
            "IPv4 addresses only). To send it anyway: "
            "hamustro config set send_ipv6 true (or HAMUSTRO_SEND_IPV6=1)"
        )
    return value


STDIN_KEYS = frozenset({"event", "user_id", "params", "is_testing", "at"})


class _Refused(Exception):
    """Raised from inside the JSON scanner: a line that parses but that we refuse."""


def _refuse_constant(token: str) -> Any:
    raise _Refused(f"{token} is not allowed (JSON has no NaN or Infinity)")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"duplicate key {shown(key)}")
            seen.add(key)
    return obj


def parse_lines(
    lines: Iterable[str], default_at: int, ip: str | None, source: str = "stdin"
) -> list[NewEvent]:
    """JSON lines into events; all or nothing: the first bad line raises with its number.

    A line of the common shape (ASCII text, values in range) takes a fast path that checks the
    same rules with cheap tests; anything else goes through `_parse_line`, which checks
    thoroughly and says exactly what is wrong. The rows are plain tuples laid out as NewEvent.

    Refused on both paths: NaN/Infinity tokens, a key given twice (at any depth), nesting
    deeper than Python's JSON can follow. The fast path proves "no key twice" without a Python
    call per object: the line's quote characters must be exactly those of the keys and strings
    it parsed to (a repeated key adds quotes that the dict lost); lines with \\u escapes, whose
    quotes cannot be counted that way, take the thorough path."""
    import json

    # the C scanner, without json.loads' two Python frames
    scan = json.JSONDecoder(parse_constant=_refuse_constant).scan_once  # type: ignore[attr-defined]
    encode = _compact_encoder()
    events: list[Any] = []
    append = events.append
    keys = STDIN_KEYS
    for number, line in enumerate(lines, 1):
        try:
            obj, end = scan(line, 0)
        except Exception:  # StopIteration, ValueError, _Refused, RecursionError: the thorough path says
            obj = None
        if type(obj) is dict and obj.keys() <= keys and (end == len(line) or not line[end:].strip()):
            event = obj.get("event")
            user_id = obj.get("user_id")
            testing = obj.get("is_testing", False)
            at = obj.get("at", default_at)
            params = obj.get("params")
            quotes = 2 * len(obj)
            if type(params) is dict:
                try:
                    params = encode(params)
                except Exception:  # RecursionError: the thorough path says
                    params = 0  # fails the test below
                else:
                    quotes += params.count('"')
            elif type(params) is str:
                quotes += 2 + ('"' in params and params.count('"'))  # `in`: no argument parsing
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
                and line.count('"') == quotes + 2 + ('"' in event and event.count('"'))
                and "\\u" not in line
            ):
                append((event, at, user_id, ip, params, testing))
                continue
        if not line.strip():
            continue
        append(_parse_line(line, f"{source} line {number}", default_at, ip))
    return events


def _compact_encoder() -> Callable[[Any], str]:
    """Parsed JSON back to text exactly as check_params writes it (compact, not ASCII-escaped,
    no NaN or infinity: `1e999` parses to inf, which must be refused, not stored as `Infinity`).

    The C encoder is made once here; JSONEncoder.encode makes one per call, which cost the fast
    path as much as proving no key is given twice. No cycle check: parsed JSON holds no cycle."""
    from json import encoder as je

    make = getattr(je, "c_make_encoder", None)
    if make is None:  # pragma: no cover - a Python without the json accelerator
        return je.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
    chunks = make(None, None, je.encode_basestring, None, ":", ",", False, False, False)
    join = "".join
    return lambda obj: join(chunks(obj, 0))


def _parse_line(line: str, where: str, default_at: int, ip: str | None) -> NewEvent:
    import json

    try:
        obj = json.loads(line, object_pairs_hook=_unique_keys, parse_constant=_refuse_constant)
    except _Refused as exc:
        raise InputError(f"{where}: {exc}") from None
    except RecursionError:
        raise InputError(f"{where}: nested too deeply") from None
    except ValueError as exc:
        raise InputError(f"{where}: not valid JSON ({exc})") from None  # its text quotes no input
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if obj.keys() - STDIN_KEYS:
        unknown = ", ".join(shown(k) for k in sorted(obj.keys() - STDIN_KEYS)[:3])
        raise InputError(f"{where}: unknown key {unknown} (allowed: {', '.join(sorted(STDIN_KEYS))})")
    if "event" not in obj:
        raise InputError(f"{where}: missing key 'event'")
    event = check_event_name(obj["event"], f"{where}: event")
    testing = obj.get("is_testing", False)
    if not isinstance(testing, bool):
        raise InputError(f"{where}: is_testing: expected true or false, got {shown(testing)}")
    user_id = obj.get("user_id")
    if isinstance(user_id, str):
        raise InputError(
            f"{where}: user_id: expected a JSON integer from 0 to {UINT32_MAX}, "
            f"got the string {shown(user_id)}"
        )
    user_id = check_user_id(user_id, f"{where}: user_id")
    params = check_params(obj.get("params"), f"{where}: params")
    at = obj["at"] if "at" in obj else event_time(default_at, 'an "at" key', f"{where}: ")
    if isinstance(at, str):
        raise InputError(f"{where}: at: expected epoch seconds (a whole number), got {shown(at)}")
    at = check_at(at, f"{where}: at")
    return NewEvent(event, at, user_id, ip, params, testing)
