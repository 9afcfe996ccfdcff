"""What each collector answer means (answers.py), as flush, the background flush and doctor act
on it: answers only a person can fix exit 4 and halt (issue 14, class 4)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SETTINGS, ScriptedServer, invoke, write_config

from hamustro_cli import answers, doctor
from hamustro_cli.answers import Kind
from hamustro_cli.config import load_config

PERSON = [301, 302, 307, 308, 401, 403, 404, 405, 407, 410, 422, 451]


def _configure(isolated: Path, url: str, **extra: object) -> Path:
    return write_config(isolated / "config.toml", collector_url=url, **extra, **SETTINGS)


def _status() -> dict:
    return json.loads(invoke("status", "--json").stdout)


def _track(n: int, params: str | None = None, prefix: str = "e") -> None:
    line = {"params": params} if params else {}
    lines = "".join(json.dumps({"event": f"{prefix}{i}", **line}) + "\n" for i in range(n))
    invoke("track", "--stdin", input=lines)


# -- the table ----------------------------------------------------------------------------------


def test_every_status_has_one_kind_and_the_exit_code_comes_from_it():
    for status in PERSON:
        said = answers.meaning(status)
        assert said.kind is Kind.PERSON and said.fix and said.kind.exit_status == 4 and said.kind.halts
    for status in (408, 429, 500, 502, 503, 504, 599):
        assert (
            answers.meaning(status).kind is Kind.TRY_LATER and answers.meaning(status).kind.exit_status == 1
        )
    assert [answers.meaning(s).kind for s in (200, 204, 400, 413)] == [
        Kind.DELIVERED,
        Kind.EMPTY,
        Kind.SPLIT,
        Kind.SPLIT,
    ]


# -- answers only a person can fix ---------------------------------------------------------------


@pytest.mark.parametrize("status", PERSON)
def test_an_answer_only_a_person_can_fix_exits_4_with_the_fix_and_halts(isolated, status):
    server = ScriptedServer([status], {"Location": "https://collector.example/"})
    try:
        _configure(isolated, server.url, retries=2, retry_delay=0.01)
        _track(2)
        result = invoke("flush", expect=4)
        said = answers.meaning(status)
        assert said.fix in result.output and str(status) in result.output
        assert server.hits == 1  # not retried: resending cannot change it
        st = _status()
        assert (st["pending"], st["rejected"], st["sending"]) == (2, 0, 0)
        assert st["halted"] and said.fix in st["halted"] and not st["due"]
        # cron's `flush --if-due` keeps saying so, without sending, until a plain flush succeeds
        again = invoke("flush", "--if-due", "--json", expect=4)
        assert json.loads(again.stdout)["halted"] and server.hits == 1
        invoke("status", "--check", expect=4)
    finally:
        server.close()


def test_answers_that_may_pass_later_exit_1_and_back_off(isolated):
    for status, hits in ((503, 3), (429, 3), (504, 3)):  # retries=2
        server = ScriptedServer([status])
        try:
            _configure(isolated, server.url, retries=2, retry_delay=0.01)
            _track(1, prefix=f"s{status}-")
            invoke("flush", expect=1)
            st = _status()
            assert not st["halted"] and st["backoff_until"], status
            assert server.hits == hits, status
        finally:
            server.close()


def test_the_background_flush_exits_with_the_code_of_the_answer(isolated):
    server = ScriptedServer([403])
    try:
        _configure(isolated, server.url, queue_size=1)
        _track(1)
        child = subprocess.run(
            [sys.executable, "-m", "hamustro_cli.background"], capture_output=True, text=True, timeout=60
        )
        assert child.returncode == 4, child.stderr
        assert answers.meaning(403).fix in child.stderr
    finally:
        server.close()


def test_doctor_gives_the_same_fix_as_a_flush(isolated):
    server = ScriptedServer([401])
    try:
        path = _configure(isolated, server.url)
        check = doctor.check_credentials(load_config(path, None))
        assert not check.ok and check.hint == answers.meaning(401).fix
    finally:
        server.close()
