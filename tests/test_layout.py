"""The package's shape: no import cycle (lazy and TYPE_CHECKING imports count), SQL only in
the spool's modules, and the sending libraries only where something is sent."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "hamustro_cli"
SQL = re.compile(r"\b(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM|PRAGMA)\b")


def modules() -> dict[str, ast.Module]:
    """By dotted name under the package (cli/events.py: "cli.events", cli/__init__.py: "cli")."""
    return {
        ".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__"): ast.parse(
            p.read_text(), str(p)
        )
        for p in PACKAGE.rglob("*.py")
        if p.stem != "payload_pb2"
    }


def imports(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hamustro_cli"):
            if node.module == "hamustro_cli":
                found.update(a.name for a in node.names)
            else:
                found.add(node.module.removeprefix("hamustro_cli."))
        elif isinstance(node, ast.Import):
            found.update(
                a.name.removeprefix("hamustro_cli.") for a in node.names if a.name.startswith("hamustro_cli.")
            )
    return found


def test_no_import_cycle():
    mods = modules()
    graph = {name: imports(tree) & set(mods) - {name} for name, tree in mods.items()}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(name) :], name]))
        if name in done:
            return
        for dep in sorted(graph[name]):
            visit(dep, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_sql_lives_in_the_spool():
    holders = set()
    for name, tree in modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
                holders.add(name)
    outside = {name for name in holders if name != "migrations" and name.split(".")[0] != "spool"}
    assert not outside, f"SQL outside the spool package and migrations: {sorted(outside)}"
    assert {"spool", "migrations"} <= holders


def test_the_sending_libraries_are_imported_only_by_modules_that_send():
    heavy: set[str] = set()
    for name, tree in modules().items():
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            if any(
                n.split(".")[0] in ("requests", "urllib3", "google") or n.endswith("payload_pb2")
                for n in names
            ):
                heavy.add(name)
    assert heavy == {"transport", "wire", "collector"}  # doctor reaches requests through transport


def test_the_spool_knows_the_latest_schema_version():
    from hamustro_cli import migrations, spooldir

    assert spooldir.SCHEMA_VERSION == len(migrations.MIGRATIONS)
