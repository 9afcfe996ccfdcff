"""The package's shape: no import cycle (lazy and TYPE_CHECKING imports count), SQL only in
the spool's modules, and the sending libraries only where something is sent."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Set
from pathlib import Path

from hamustro_cli.spool import State
from hamustro_cli.spool.filters import ShownState

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


# -- states have one home: the spool ---------------------------------------------------------------

# The words `events` and `status --events` show for an event's state (spool.filters.ShownState, whose
# names are State's and SENDING); outside the spool (and its migrations) they are spelt through
# the enums, never as literals a renamed state would leave behind.
STATE_WORDS = {shown.value for shown in ShownState}
SPOOL_ROOM = {"spool", "migrations"}


def _names_a_state(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id == "state") or (
        isinstance(node, ast.Attribute) and node.attr == "state"
    )


def _is_int(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int


def states_spelt_out(tree: ast.Module) -> list[tuple[int, str]]:
    """A state word used as a value (compared, listed, passed: not a dict key, a subscript or a
    keyword's text for people, which name counts), and a state compared with or given as a number."""
    parent = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value in STATE_WORDS:
            up = parent.get(node)
            if isinstance(up, ast.Dict) and any(node is key for key in up.keys):
                continue
            if isinstance(up, ast.Subscript) and up.slice is node:
                continue
            if isinstance(up, ast.keyword) and up.arg != "state":
                continue
            found.append((node.lineno, f"the state word {node.value!r}"))
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(map(_names_a_state, sides)) and any(map(_is_int, sides)):
                found.append((node.lineno, "a state compared with a number"))
        elif isinstance(node, ast.keyword) and node.arg == "state" and _is_int(node.value):
            found.append((node.lineno, "a state given as a number"))
    return found


Finder = Callable[[ast.Module], list[tuple[int, str]]]


def offences(find: Finder, allowed: Set[str] = frozenset()) -> list[str]:
    """What `find` finds in every module of the package but those under `allowed`, as
    "MODULE:LINE: WHAT"."""
    return [
        f"{name}:{line}: {what}"
        for name, tree in sorted(modules().items())
        if name.split(".")[0] not in allowed
        for line, what in find(tree)
    ]


def test_states_are_spelt_only_in_the_spool():
    where = offences(states_spelt_out, SPOOL_ROOM)
    assert not where, "name a state through spool.State / spool.filters.ShownState:\n" + "\n".join(where)


def test_the_state_check_sees_a_state_spelt_out():
    tree = ast.parse(
        'click.Choice(["pending", "sending"])\n'
        'if chosen not in (None, "rejected"):\n    pass\n'
        "if row.state == 2:\n    pass\n"
        "EventFilter(state=0)\n"
        'totals = {"pending": 1}\nprint(totals["rejected"], label="sending")\n'
    )
    assert sorted(states_spelt_out(tree)) == [
        (1, "the state word 'pending'"),
        (1, "the state word 'sending'"),
        (2, "the state word 'rejected'"),
        (4, "a state compared with a number"),
        (6, "a state given as a number"),
    ]


def test_shown_is_state_and_the_batch_being_sent():
    assert {shown.name for shown in ShownState} == {state.name for state in State} | {"SENDING"}
    assert all(shown.value == shown.name.lower() for shown in ShownState)
