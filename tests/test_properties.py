"""Property-based tests (issue 9, "Done when"): generated JSON lines, argv values, settings and
collector answers. Each input either queues/delivers or is refused cleanly (exit 2, one `hamustro: error:`
line, nothing queued); never a traceback, never an exit status that changes after queuing; a 200
deletes exactly the batch, anything else leaves it queued.

Kept fast: few examples per property (the `ci` profile, derandomized, is the default; set
HYPOTHESIS_PROFILE=dev for a longer random run)."""

from __future__ import annotations

import json
import os
import string
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import SETTINGS, run, serve, write_config
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hamustro_cli.cli import cli
from hamustro_cli.config import load_config
from hamustro_cli.errors import ConfigError, InputError
from hamustro_cli.events import STDIN_KEYS, _parse_line, parse_lines
from hamustro_cli.spool import DB_NAME
from hamustro_cli.spool.full import Spool
from hamustro_cli.tracker import ClientTracker

settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "dev", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def queued_count(spool_dir: Path) -> int:
    if not (spool_dir / DB_NAME).exists():
        return 0
    with Spool(spool_dir) as spool:
        return sum(1 for _ in spool.iter_events())


def clean_refusal(output: str) -> None:
    assert "Traceback" not in output, output
    errors = [ln for ln in output.splitlines() if ln.startswith("hamustro: error:")]
    assert len(errors) == 1, output
    assert len(errors[0]) < 400, errors[0]


# -- JSON lines at the parser ---------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
keys = st.sampled_from(sorted(STDIN_KEYS)) | st.text(max_size=6)
objects = st.dictionaries(keys, json_values, max_size=6)
event_objects = st.fixed_dictionaries(
    {"event": st.text(min_size=1, max_size=30)},
    optional={
        "user_id": st.integers(min_value=-5, max_value=2**33),
        "params": json_values,
        "is_testing": st.booleans(),
        "at": st.integers(min_value=-5, max_value=2**64),
    },
)


def line_variants(obj: Any) -> st.SearchStrategy[str]:
    text = json.dumps(obj, ensure_ascii=False)
    ascii_text = json.dumps(obj)
    return st.sampled_from([text, ascii_text, " " + ascii_text + " \r", text.replace(", ", ",")])


def outcome(line: str) -> tuple[str, Any]:
    try:
        return "ok", [tuple(e) for e in parse_lines([line], 7, None)]
    except InputError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 400, str(exc)
        return "refused", None


@given(st.one_of(objects, event_objects).flatmap(line_variants))
def test_json_lines_are_queued_or_refused(line: str) -> None:
    """Fast and thorough paths agree: both accept (the same tuple) or both refuse."""
    got = outcome(line)
    slow: tuple[str, list[tuple[Any, ...]] | None]
    try:
        slow = ("ok", [tuple(_parse_line(line, "stdin line 1", 7, None))])
    except InputError:
        slow = ("refused", None)
    if line.strip():
        assert got == slow


@given(st.text(max_size=200) | st.binary(max_size=100).map(lambda b: b.decode("utf-8", "surrogateescape")))
@example('{"event": "a", "event": "b"}')
@example('{"event": "a", "params": {"k": "\\u0022", "k": 1}}')
@example('{"event": "a", "at": NaN}')
@example("[" * 5000)
def test_any_text_is_queued_or_refused(line: str) -> None:
    outcome(line)


@given(event_objects, st.integers(0, 4))
def test_a_repeated_key_is_always_refused(obj: dict[str, Any], index: int) -> None:
    key = sorted(obj)[index % len(obj)]
    text = json.dumps(obj)
    line = text[:-1] + ("," if len(obj) else "") + json.dumps(key) + ": 1}"
    assert outcome(line)[0] == "refused"


# -- argv at the CLI -------------------------------------------------------------------------------

argv_text = st.text(max_size=40) | st.binary(max_size=20).map(lambda b: b.decode("utf-8", "surrogateescape"))
track_args = st.fixed_dictionaries(
    {"event": argv_text},
    optional={
        "--user-id": argv_text | st.integers(-10, 2**40).map(str),
        "--params": argv_text,
        "--at": argv_text | st.integers(-10, 2**70).map(str),
        "--ip": st.sampled_from(["127.0.0.1", "::1", "1.2.3", "x"]) | argv_text,
        "--param": argv_text,
    },
)


def argv_of(args: dict[str, str]) -> list[str]:
    out = ["track", "--", args["event"]] if args["event"].startswith("-") else ["track", args["event"]]
    for flag, value in args.items():
        if flag != "event":
            out[1:1] = [flag, value]
    return out


def check_track(code: int, output: str, before: int, after: int) -> None:
    assert "Traceback" not in output, output
    if code == 0:
        assert after == before + 1, output
    else:
        assert code == 2, (code, output)
        if "Usage:" not in output:  # click's own usage errors print usage plus one hamustro: error: line
            clean_refusal(output)
        assert after == before


@given(track_args)
def test_track_argv_in_process(config: Path, spool_dir: Path, args: dict[str, str]) -> None:
    before = queued_count(spool_dir)
    result = CliRunner().invoke(cli, argv_of(args), catch_exceptions=True)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    check_track(result.exit_code, result.output, before, queued_count(spool_dir))


@pytest.mark.heavy
@settings(max_examples=8)
@given(track_args)
def test_track_argv_real_process(config: Path, spool_dir: Path, args: dict[str, str]) -> None:
    before = queued_count(spool_dir)
    proc = run(*argv_of(args))
    check_track(proc.returncode, proc.stderr, before, queued_count(spool_dir))


@pytest.mark.heavy
@settings(max_examples=8)
@given(st.lists(st.one_of(objects, event_objects).flatmap(line_variants), min_size=1, max_size=4))
def test_track_stdin_real_process(config: Path, spool_dir: Path, lines: list[str]) -> None:
    before = queued_count(spool_dir)
    proc = run("track", "--stdin", input="\n".join(lines))
    after = queued_count(spool_dir)
    assert "Traceback" not in proc.stderr, proc.stderr
    if proc.returncode == 0:
        assert after - before == sum(1 for ln in lines if ln.strip())
    else:
        assert proc.returncode == 2, proc.stderr
        clean_refusal(proc.stderr)
        assert after == before


# -- settings ------------------------------------------------------------------------------------

setting_values = st.one_of(
    st.text(max_size=20).filter(lambda v: "\x00" not in v),  # an environment cannot hold NUL
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["1e300", "nan", "inf", "-0", "0.0001", "1e-300", "true", "1.5", " 3 ", "0x10"]),
)
env_settings = st.dictionaries(
    st.sampled_from(
        [
            "QUEUE_SIZE",
            "QUEUE_RETENTION",
            "TIMEOUT",
            "MAX_BATCH_EVENTS",
            "RETRIES",
            "RETRY_DELAY",
            "FLUSH",
            "IP",
            "TLS_VERIFY",
            "PRODUCT_VERSION",
            "DEVICE_ID",
        ]
    ),
    setting_values,
    max_size=3,
)


@given(env_settings)
def test_settings_load_or_are_refused(env: dict[str, str]) -> None:
    full = {"HAMUSTRO_" + k: v for k, v in env.items()}
    try:
        load_config(env=full, use_file=False)
    except ConfigError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=60)
@given(env_settings)
@example({"QUEUE_SIZE": "9" * 30})
def test_settings_out_of_range_are_refused_before_queuing(
    config: Path, spool_dir: Path, env: dict[str, str]
) -> None:
    """A value that loads must work: `track` queues and exits 0 with no failure noted."""
    full = {"HAMUSTRO_" + k: v for k, v in env.items() if k not in ("FLUSH",)}
    before = queued_count(spool_dir)
    result = CliRunner(env=full).invoke(cli, ["track", "e", "--json", "--no-flush"], catch_exceptions=True)
    if result.exit_code == 0:
        assert json.loads(result.output.splitlines()[-1])["flush"] != "failed", result.output
    else:
        assert result.exit_code == 2
        clean_refusal(result.output)
        assert queued_count(spool_dir) == before


@settings(max_examples=15)
@given(env_settings)
@example({"QUEUE_SIZE": "9" * 30, "FLUSH": "inline"})
@example({"TIMEOUT": "1e300", "FLUSH": "inline", "QUEUE_SIZE": "1"})
def test_settings_never_change_the_status_after_queuing(
    isolated: Path, collector: Any, spool_dir: Path, env: dict[str, str]
) -> None:
    write_config(isolated / "config.toml", collector_url=collector.url, **SETTINGS)
    full = {"HAMUSTRO_" + k: v for k, v in env.items()}
    before = queued_count(spool_dir)
    result = CliRunner(env=full).invoke(cli, ["track", "e"], catch_exceptions=True)
    after = queued_count(spool_dir)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    if after > before:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 2, result.output
        clean_refusal(result.output)


# -- collector answers at the sender -----------------------------------------------------------


class Answer:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes, length: str | None):
        self.status, self.headers, self.body, self.length = status, headers, body, length


class AnswerServer:
    """A real server on 127.0.0.1:0 giving whatever answer the test sets, byte for byte."""

    def __init__(self) -> None:
        outer = self
        self.answer = Answer(200, [], b"", None)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                a = outer.answer
                self.send_response(a.status)
                for k, v in a.headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", a.length if a.length is not None else str(len(a.body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(a.body)
                self.close_connection = True

            def log_message(self, *a: object) -> None:
                pass

        self.server, self.url = serve(Handler)


@pytest.fixture(scope="module")
def answers() -> Iterator[AnswerServer]:
    server = AnswerServer()
    yield server
    server.server.shutdown()
    server.server.server_close()


header_text = st.text(alphabet=string.printable.replace("\r", "").replace("\n", "")[:-2], max_size=30)
answer_headers = st.lists(
    st.tuples(st.sampled_from(["Location", "Content-Type", "X-Odd", "Set-Cookie"]), header_text), max_size=3
)
bodies = st.binary(max_size=200) | st.sampled_from([b'{"error": "x"}', b"\x00\xff", b"OK"])
lengths = st.none() | st.sampled_from(["0", "5", "-1", "abc", "99999999999999999999"])
statuses = st.sampled_from([200, 201, 204, 301, 302, 400, 401, 403, 404, 413, 429, 500, 502, 503, 599])


def flush_against(tmp: Path, url: str, answer: Answer, server: AnswerServer) -> tuple[int, int, Any]:
    """Queue 3 events in a fresh spool, flush once; returns (pending before, after, report)."""
    server.answer = answer
    settings_ = {k: v for k, v in SETTINGS.items() if k != "flush"}
    spool_dir = tmp / f"spool-{os.urandom(4).hex()}"
    with ClientTracker(
        collector_url=url, spool_dir=str(spool_dir), retries=0, timeout=5, ip="off", **settings_
    ) as t:
        for i in range(3):
            t.track_event(f"e{i}", flush=False)
        totals = t.spool.totals()
        before = totals.live + totals.rejected
        report = t.flush()
        totals = t.spool.totals()
        after = totals.live + totals.rejected
    return before, after, report


def check_answer(before: int, after: int, status: int) -> None:
    if status == 200:
        assert after == 0  # the whole batch, and nothing else, is gone
    else:
        assert after == before  # still queued (pending or set aside as rejected)


@given(statuses, answer_headers, bodies, lengths)
def test_collector_answers_at_the_sender(
    tmp_path: Path, answers: AnswerServer, status: int, headers: Any, body: bytes, length: str | None
) -> None:
    before, after, _ = flush_against(tmp_path, answers.url, Answer(status, headers, body, length), answers)
    assert before == 3
    check_answer(before, after, status)


@settings(max_examples=20)
@given(
    statuses,
    st.sampled_from(["", "0", "-1", "1e999", "²", "abc", "Wed, 21 Oct 2015 07:28:00 GMT"]) | header_text,
)
@example(200, "²")
def test_retry_after_never_changes_the_outcome(
    tmp_path: Path, answers: AnswerServer, status: int, value: str
) -> None:
    before, after, _ = flush_against(
        tmp_path, answers.url, Answer(status, [("Retry-After", value)], b"", None), answers
    )
    check_answer(before, after, status)


@given(st.dictionaries(st.text(max_size=8), st.text(max_size=12), max_size=5))
@example({"k": "v"})
@example({'"quoted"': "back\\slash\n\t\x00\x1f\x7f é € 𝄞"})
@example({"lone": "\udcff\ud800"})  # surrogates argv carries for bytes that are not UTF-8
def test_param_pairs_become_the_object_json_would_write(obj: dict[str, str]) -> None:
    """`--param` writes its object without importing json; it must be json's text exactly."""
    from hamustro_cli.events import _string_object

    assert _string_object(obj) == json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
