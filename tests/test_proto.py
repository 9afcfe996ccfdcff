"""The committed schema and generated code match the spec and each other."""

from __future__ import annotations

import sys
from pathlib import Path

from specschema import ROOT, normalized, spec_messages

sys.path.insert(0, str(ROOT / "tools"))
import gen_proto  # noqa: E402


def test_proto_file_has_exactly_the_spec_messages():
    ours = (ROOT / "proto" / "payload.proto").read_text()
    assert 'syntax = "proto2";' in ours
    spec = normalized(spec_messages())
    assert len(spec) == 19  # 2 messages: 7 + 8 fields, 2 headers, 2 closing braces
    assert normalized(ours) == spec


def test_generated_module_is_not_stale(tmp_path: Path):
    fresh = gen_proto.generate(tmp_path)
    committed = ROOT / "hamustro_cli" / "payload_pb2.py"
    assert fresh.read_text() == committed.read_text(), (
        "hamustro_cli/payload_pb2.py is stale: run python tools/gen_proto.py and commit it"
    )
