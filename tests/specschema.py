"""The wire schema taken from the protocol's own text, compiled apart from the project's code.

Tests decode what the client sent with these classes, so a mistake in proto/ or in the
generated module cannot hide itself.
"""

from __future__ import annotations

import functools
import re
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT.parent / "shared" / "spec" / "pseudo-client.md"


def spec_messages() -> str:
    """The ```protobuf block of pseudo-client.md (or, without shared/, proto/payload.proto)."""
    if SPEC.exists():
        match = re.search(r"```protobuf\n(.*?)```", SPEC.read_text(), re.S)
        assert match, f"no protobuf block in {SPEC}"
        return match.group(1)
    text = (ROOT / "proto" / "payload.proto").read_text()
    return text[text.index("message Payload") :]


def normalized(proto_text: str) -> list[str]:
    """Message and field lines only, whitespace folded: for comparing two schema texts."""
    out = []
    for line in proto_text.splitlines():
        line = line.split("//", 1)[0].strip()
        if line.startswith(("message", "required", "optional", "repeated", "}")):
            out.append(" ".join(line.replace("=", " = ").split()))
    return out


@functools.cache
def spec_classes() -> tuple[Any, Any]:
    """(Collection, Payload) message classes built from the spec text in a private pool."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "spec_wire.proto"
        src.write_text('syntax = "proto2";\npackage payload;\n' + spec_messages())
        out = Path(tmp) / "set.pb"
        rc = protoc.main(["protoc", f"-I{tmp}", f"--descriptor_set_out={out}", str(src)])
        assert rc == 0, "protoc could not compile the spec's schema"
        fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    collection = message_factory.GetMessageClass(pool.FindMessageTypeByName("payload.Collection"))
    payload = message_factory.GetMessageClass(pool.FindMessageTypeByName("payload.Payload"))
    return collection, payload


def decode(body: bytes) -> Any:
    collection, _ = spec_classes()
    msg = collection()
    msg.ParseFromString(body)
    assert msg.IsInitialized()
    return msg
