"""The committed schema, the generated descriptor and the built message classes match the spec
and each other; the bytes are those of protoc's gencode on every protobuf runtime; an unusable
protobuf is one clear error."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import SETTINGS, invoke, run, write_config
from specschema import ROOT, compile_messages, label, normalized, spec_messages

from hamustro_cli import wire
from hamustro_cli.payload_descriptor import SERIALIZED
from hamustro_cli.session import Session
from hamustro_cli.spool.rows import QueuedEvent

sys.path.insert(0, str(ROOT / "tools"))
import gen_proto  # type: ignore[import-not-found]  # noqa: E402  (tools/ is put on the path above)

PROTO = ROOT / "proto" / "payload.proto"


def needs_protoc():
    """grpcio-tools (the `dev` extra) is only for regenerating; the tests run without it."""
    return pytest.importorskip(
        "grpc_tools.protoc", reason="grpcio-tools is not installed (the `dev` extra): protoc unavailable"
    )


def test_proto_file_has_exactly_the_spec_messages():
    ours = PROTO.read_text()
    assert 'syntax = "proto2";' in ours
    spec = normalized(spec_messages())
    assert len(spec) == 19  # 2 messages: 7 + 8 fields, 2 headers, 2 closing braces
    assert normalized(ours) == spec


def test_committed_descriptor_is_the_proto_file_compiled():
    """Stale-check without protoc: the committed bytes against proto/payload.proto read by
    the tests' own reader."""
    from google.protobuf import descriptor_pb2

    committed = descriptor_pb2.FileDescriptorProto.FromString(SERIALIZED)
    assert committed == compile_messages(PROTO.read_text(), name="payload.proto")
    assert committed.SerializeToString(deterministic=True) == SERIALIZED


def test_built_classes_have_the_spec_messages():
    """Field by field through the descriptor API (on the pure-Python backend CopyToProto
    fails for the descriptors of a pool's AddSerializedFile, on every version)."""
    spec = compile_messages(spec_messages())
    for cls, expected in zip((wire.Collection, wire.Payload), ("Collection", "Payload"), strict=True):
        assert cls.DESCRIPTOR.full_name == f"payload.{expected}"
        built = [
            (f.name, f.number, label(f), f.type, f.message_type.full_name if f.message_type else "")
            for f in cls.DESCRIPTOR.fields
        ]
        message = next(m for m in spec.message_type if m.name == expected)
        want = [(f.name, f.number, f.label, f.type, f.type_name.lstrip(".")) for f in message.field]
        assert built == want


def test_generated_module_is_not_stale(tmp_path: Path):
    needs_protoc()
    fresh = gen_proto.generate(tmp_path)
    committed = ROOT / "hamustro_cli" / gen_proto.MODULE
    assert fresh.read_text() == committed.read_text(), (
        f"hamustro_cli/{gen_proto.MODULE} is stale: run python tools/gen_proto.py and commit it"
    )


def test_the_tests_reader_agrees_with_protoc(tmp_path: Path):
    """specschema compiles the spec without protoc; protoc must read the same text the same way."""
    needs_protoc()
    src = tmp_path / "spec_wire.proto"
    src.write_text('syntax = "proto2";\npackage payload;\n' + spec_messages())
    assert gen_proto.compile_proto(src) == compile_messages(spec_messages()).SerializeToString()


# What wire.encode gave with protoc 7.35's gencode (payload_pb2.py, protobuf 7.36.2, upb),
# recorded before the classes were built at run time. .ci/run checks them on every runtime.
GOLDEN_FULL = (
    "0a40303365623661626665666434366364303939663534653633303933366662393564303134383138323437"
    "356361633934373533333237306565623131313236391208636c69656e742d611a2034663166313138666334"
    "3133333765376663663166343631656363646630363122094c696e757820362e312a05312e302e3032056c69"
    "6e75783a06616263313233420e0880e2cfaa0612046f70656e1801424008ffffffffffffffff7f120dc3bc6e"
    "c3af636f646520e29c93180220ffffffff0f2a093139322e302e322e3132107b2270617468223a222f686f6d"
    "65227d38014219080012017818ffffffff0f20002a0831302e302e302e373200421b0881e2cfaa0612001803"
    "20072a0b323030313a6462383a3a313801"
)
GOLDEN_BARE = (
    "0a40313861633365373334336630313638393063353130653933663933353236313136396439653366353635"
    "343336343239383330666166303933346634663865341201631a203131663930653332376534613738373565"
    "3161356136316238383133396533632201732a0170"
)
GOLDEN_BIG_SHA256 = "235e6d46833520bc142d09281f85e5a64ddda0aec32d823dde3cd3024d520c64"


def test_bytes_are_those_of_protocs_gencode():
    full = Session.from_settings("device-42", "client-a", "Linux 6.1", "1.0.0", "linux", "abc123")
    bare = Session.from_settings("d", "c", "s", "p")
    events = [
        QueuedEvent(1, 1, 1700000000, "open", None, None, None, False),
        QueuedEvent(2, 2, 2**63 - 1, "ünïcode ✓", 4294967295, "", '{"path":"/home"}', True),
        QueuedEvent(3, 4294967295, 0, "x", 0, "10.0.0.7", "", False),
        QueuedEvent(4, 3, 1700000001, "", 7, "2001:db8::1", None, True),
    ]
    assert wire.encode(full, events, "192.0.2.1").hex() == GOLDEN_FULL
    assert wire.encode(bare, []).hex() == GOLDEN_BARE
    big = [
        QueuedEvent(i, i, 1700000000 + i, f"event-{i % 7}", i % 3 or None, "", f'{{"k":{i}}}', i % 5 == 0)
        for i in range(1, 2001)
    ]
    assert hashlib.sha256(wire.encode(full, big, "192.0.2.1")).hexdigest() == GOLDEN_BIG_SHA256


# -- an unusable protobuf ---------------------------------------------------------------------

UNUSABLE = {
    # an old release that pip was forced to keep
    "too old": "__version__ = '3.19.6'\n",
    # a half-removed or mismatched install
    "broken": "__version__ = '7.36.2'\nraise ImportError('cannot import name _message')\n",
}


@pytest.fixture(params=sorted(UNUSABLE))
def unusable_protobuf(request, tmp_path: Path) -> tuple[str, dict[str, str]]:
    """(kind, environment) of a process that finds this protobuf before the installed one."""
    package = tmp_path / "shadow" / "google" / "protobuf"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text(UNUSABLE[request.param])
    # protobuf < 4 installs a .pth that makes `google` a namespace of site-packages at start-up,
    # before PYTHONPATH is searched for it: put the shadow first in that namespace too.
    (tmp_path / "shadow" / "sitecustomize.py").write_text(
        "import os, sys\n"
        "google = sys.modules.get('google')\n"
        "if google is not None:\n"
        "    google.__path__ = [os.path.join(os.path.dirname(__file__), 'google'), *google.__path__]\n"
    )
    return request.param, {"PYTHONPATH": str(tmp_path / "shadow")}


def assert_one_clear_error(stderr: str, kind: str) -> None:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("hamustro: error: "), stderr
    assert "hamustro needs protobuf >=3.20.3,<8" in lines[0]
    if kind == "too old":
        assert "protobuf 3.19.6 is installed" in lines[0]
    else:
        assert "cannot import name _message" in lines[0]


def test_flush_with_unusable_protobuf_is_one_error_that_status_shows(isolated, unusable_protobuf):
    kind, env = unusable_protobuf
    write_config(isolated / "config.toml", collector_url="http://127.0.0.1:9", **SETTINGS)
    assert invoke("track", "open", expect=None).exit_code == 0  # in-process: protobuf is not its point
    for args in (["flush"], ["flush", "--dry-run"]):
        flush = run(*args, env=env)  # a process: the one that finds the unusable protobuf first
        assert flush.returncode == 2, flush.stderr
        assert_one_clear_error(flush.stderr, kind)
    status = json.loads(invoke("status", "--json", expect=None).stdout)
    assert status["pending"] == 1 and status["sending"] == 0
    assert status["last_error"]["message"] == flush.stderr.strip().removeprefix("hamustro: error: ")


def test_background_flush_with_unusable_protobuf_leaves_its_error_for_status(
    isolated, spool_dir, unusable_protobuf
):
    kind, env = unusable_protobuf
    settings = {**SETTINGS, "flush": "background"}
    write_config(isolated / "config.toml", collector_url="http://127.0.0.1:9", queue_size=1, **settings)
    result = run("track", "open", "--json", env=env)  # track itself never imports protobuf
    assert result.returncode == 0 and json.loads(result.stdout)["flush"] == "started"
    deadline = time.monotonic() + 30

    # status in-process, not a process a poll: the background flush is the process under test
    def last_error() -> Any:
        return json.loads(invoke("status", "--json", expect=None).stdout)["last_error"]

    while last_error() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    error = last_error()
    assert error and "hamustro needs protobuf >=3.20.3,<8" in error["message"]
    shown = invoke("status", expect=None).stdout
    assert "hamustro needs protobuf" in shown.split("last error:", 1)[1].splitlines()[0]
    while "error:" not in (spool_dir / "flush.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = (spool_dir / "flush.log").read_text()
    assert "Traceback" not in log and "error: " in log


def test_doctor_with_unusable_protobuf_fails_its_check_with_the_reason(
    isolated, collector, unusable_protobuf
):
    kind, env = unusable_protobuf
    write_config(isolated / "config.toml", collector_url=collector.url, **SETTINGS)
    doctor = run("doctor", env=env)
    assert doctor.returncode == 1
    assert "Traceback" not in doctor.stderr + doctor.stdout
    line = next(line for line in doctor.stdout.splitlines() if "credentials" in line)
    assert line.startswith("FAIL") and "hamustro needs protobuf >=3.20.3,<8" in line
    assert collector.requests == []  # nothing was sent
