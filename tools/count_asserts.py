"""Count the assert statements in the tests, per file and in total (python tools/count_asserts.py).

Counted from the syntax tree (`ast.Assert` nodes, so a comment or a string saying "assert" is not
one), in every `tests/*.py` or in the files given. `--total` prints only the total. Used to show that
moving or speeding up tests drops no check: the total must not fall.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"


def count(path: Path) -> int:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return sum(isinstance(node, ast.Assert) for node in ast.walk(tree))


def main(argv: list[str]) -> int:
    only_total = "--total" in argv
    paths = [Path(a) for a in argv if a != "--total"] or sorted(TESTS.glob("*.py"))
    total = 0
    for path in paths:
        n = count(path)
        total += n
        if not only_total:
            print(f"{n:6d}  {path.name}")
    print(total if only_total else f"{total:6d}  total ({len(paths)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
