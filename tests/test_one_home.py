"""Rules written once (issue 17, item 3): the schema version, and the Collection's fields
(one list, which agrees with the protocol's own descriptor)."""

from __future__ import annotations

import ast
from pathlib import Path

from specschema import LABEL_REQUIRED, label

from hamustro_cli import wire
from hamustro_cli.session import COLLECTION_FIELDS, Session


def test_the_collection_field_list_is_the_protocols():
    collection = wire.messages()[0]
    fields = [
        (f.name, label(f) == LABEL_REQUIRED) for f in collection.DESCRIPTOR.fields if f.name != "payloads"
    ]
    assert fields == list(COLLECTION_FIELDS)


def test_an_encoded_collection_carries_every_field_of_the_list():
    session = Session.from_settings("dev", "client", "1", "2", system="linux", product_git_hash="abc")
    coll = wire.messages()[0]()
    coll.ParseFromString(wire.encode(session, []))
    assert {name: getattr(coll, name) for name, _ in COLLECTION_FIELDS} == session.to_dict()


def test_the_schema_version_is_written_once():
    """One number (spooldir.SCHEMA_VERSION), which the spool and migrations read; tests/test_layout.py checks
    that it counts the migrations."""
    package = Path(__file__).resolve().parent.parent / "hamustro_cli"
    written = [
        path.name
        for path in sorted(package.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "SCHEMA_VERSION" for t in node.targets)
    ]
    assert written == ["spooldir.py"]
