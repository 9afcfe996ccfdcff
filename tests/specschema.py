"""The wire schema taken from the protocol's own text, compiled apart from the project's code.

Tests decode what the client sent with these classes, so a mistake in proto/ or in the
generated module cannot hide itself. The text is compiled here, by a reader of the few forms
the spec uses, not by protoc: no protoc is needed to run the tests, on any protobuf runtime.
"""

from __future__ import annotations

import functools
import re
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


# The scalar types of .proto text and their FieldDescriptorProto.Type numbers (descriptor.proto).
SCALARS = {
    "double": 1, "float": 2, "int64": 3, "uint64": 4, "int32": 5, "fixed64": 6, "fixed32": 7,
    "bool": 8, "string": 9, "bytes": 12, "uint32": 13, "sfixed32": 15, "sfixed64": 16,
    "sint32": 17, "sint64": 18,
}  # fmt: skip
LABELS = {"optional": 1, "required": 2, "repeated": 3}
TYPE_MESSAGE = 11
FIELD = re.compile(r"(optional|required|repeated) (\w+) (\w+) = (\d+);")


def compile_messages(proto_text: str, name: str = "spec_wire.proto", package: str = "payload") -> Any:
    """A FileDescriptorProto of the proto2 messages in `proto_text`, without protoc: for the
    flat messages of this protocol (scalar fields and fields of a message of the same file)."""
    from google.protobuf import descriptor_pb2

    fd = descriptor_pb2.FileDescriptorProto(name=name, package=package)
    message = None
    for line in normalized(proto_text):
        if line.startswith("message"):
            message = fd.message_type.add(name=line.split()[1])
        elif line == "}":
            message = None
        else:
            match = FIELD.fullmatch(line)
            assert match and message is not None, f"cannot read {line!r}"
            label, kind, field_name, number = match.groups()
            field = message.field.add(name=field_name, number=int(number), label=LABELS[label])
            if kind in SCALARS:
                field.type = SCALARS[kind]
            else:
                field.type = TYPE_MESSAGE
                field.type_name = f".{package}.{kind}"
    return fd


def message_class(pool: Any, full_name: str) -> Any:
    from google.protobuf import message_factory

    descriptor = pool.FindMessageTypeByName(full_name)
    if hasattr(message_factory, "GetMessageClass"):  # protobuf 4.x and later
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)  # protobuf 3.20


@functools.cache
def spec_classes() -> tuple[Any, Any]:
    """(Collection, Payload) message classes built from the spec text in a private pool."""
    from google.protobuf import descriptor_pool

    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(compile_messages(spec_messages()).SerializeToString())
    return message_class(pool, "payload.Collection"), message_class(pool, "payload.Payload")


def decode(body: bytes) -> Any:
    collection, _ = spec_classes()
    msg = collection()
    msg.ParseFromString(body)
    assert msg.IsInitialized()
    return msg


LABEL_REQUIRED = 2  # FieldDescriptorProto.Label


def label(field: Any) -> int:
    """FieldDescriptorProto.Label of a field: protobuf 7 has no .label, before 6 only .label."""
    if hasattr(field, "is_repeated"):
        return 3 if field.is_repeated else LABEL_REQUIRED if field.is_required else 1
    return int(field.label)
