"""The `hamustro` console script. `track` in the forms scripts call it in most is parsed here,
without loading Click (about half of a `track`'s time); any other call, and any `track` whose
arguments this parser is not sure of (--help, -h, an unknown or repeated flag, `--`, a value
that starts with a dash, combined short flags, shell completion), goes to Click whole, which
gives the exact usage messages. What `track` then does is trackrun.run_track either way; the
differential test (tests/test_fast_track.py) holds the two ways to the same output.

This module imports nothing at its top: the console script reaches `main` first."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

# The options known here, as Click names them (cli.__init__, cli.track): name to keyword.
GLOBAL_VALUES = {"--config": "config_path", "--spool-dir": "spool_dir"}
TRACK_VALUES = {"--user-id": "user_id", "--params": "params", "--at": "at", "--ip": "ip"}
TRACK_FLAGS = {"--testing": "testing", "--stdin": "from_stdin", "--json": "as_json"}
FLUSH_FLAGS = {"--flush": True, "--no-flush": False}
COMPLETE_VAR = "_HAMUSTRO_COMPLETE"  # Click's shell completion for prog_name "hamustro"


def parse_track(argv: Sequence[str], environ: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(the global options, `track`'s keyword arguments) for `hamustro [GLOBAL] track [ARGS]`
    in the plain forms, or None: this call is Click's."""
    if environ.get(COMPLETE_VAR):
        return None
    glob: dict[str, Any] = {"config_path": None, "spool_dir": None, "verbose": 0, "quiet": False}
    args: dict[str, Any] = {
        "event": None,
        **dict.fromkeys(TRACK_VALUES.values()),
        "param_pairs": [],
        **dict.fromkeys(TRACK_FLAGS.values(), False),
        "flush": None,
    }
    seen: set[str] = set()
    i, n = 0, len(argv)
    in_track = False
    while i < n:
        arg = argv[i]
        i += 1
        if not in_track:
            if arg == "track":
                in_track = True
            elif arg in ("-v", "--verbose"):
                glob["verbose"] += 1
            elif arg in ("-q", "--quiet"):
                glob["quiet"] = True
            else:
                i = _take(arg, argv, i, GLOBAL_VALUES, glob, seen)
                if i < 0:
                    return None
            continue
        if not arg.startswith("-"):
            if args["event"] is not None:
                return None  # Click's "unexpected extra argument"
            args["event"] = arg
        elif arg in TRACK_FLAGS or arg in FLUSH_FLAGS:
            key = TRACK_FLAGS.get(arg, "flush")
            if key in seen:
                return None
            seen.add(key)
            args[key] = FLUSH_FLAGS[arg] if key == "flush" else True
        else:
            if arg == "--param" or arg.startswith("--param="):
                taken = _value(arg, argv, i, {"--param": "param_pairs"})
                if taken is None:
                    return None
                args["param_pairs"].append(taken[1])
                i = taken[2]
                continue
            i = _take(arg, argv, i, TRACK_VALUES, args, seen)
            if i < 0:
                return None
    if not in_track:
        return None
    args["param_pairs"] = tuple(args["param_pairs"])
    return glob, args


def _take(
    arg: str, argv: Sequence[str], i: int, known: dict[str, str], into: dict[str, Any], seen: set[str]
) -> int:
    """Read a single-valued option into `into`: the index after it, or -1 (not one of `known`,
    given twice, or not plain)."""
    taken = _value(arg, argv, i, known)
    if taken is None or taken[0] in seen:
        return -1
    name, into[name], i = taken
    seen.add(name)
    return i


def _value(arg: str, argv: Sequence[str], i: int, known: dict[str, str]) -> tuple[str, str, int] | None:
    """An option that takes a value, `--name VALUE` or `--name=VALUE`: (its keyword, the value,
    the index after it), or None when `arg` is not one of `known` or its value is not plain."""
    name, eq, value = arg.partition("=")
    if name not in known:
        return None
    if eq:
        return known[name], value, i
    if i >= len(argv) or argv[i].startswith("-"):
        return None  # missing, or a value Click versions may read as an option
    return known[name], argv[i], i + 1


def run_fast(glob: dict[str, Any], args: dict[str, Any]) -> int:
    """`track` as Click would run it: an error of the library as `hamustro: error: ...` and its exit code,
    Ctrl-C as `Aborted!` and 1, a standard stream that broke (EPIPE) as 1."""
    import errno

    from hamustro_cli.errors import HamustroError, exit_status
    from hamustro_cli.invocation import GlobalOptions
    from hamustro_cli.log import ERROR, line
    from hamustro_cli.streams import echo, silence
    from hamustro_cli.trackrun import run_track

    try:
        run_track(GlobalOptions(**glob), **args)
    except HamustroError as exc:
        echo(line(ERROR, str(exc)), err=True)  # as cli.options.show_error prints it
        return int(exit_status(exc))
    except (EOFError, KeyboardInterrupt):
        try:
            echo("", err=True)
            echo("Aborted!", err=True)
        except OSError:
            pass
        return 1
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        silence(sys.stdout)
        silence(sys.stderr)
        return 1
    return 0


def _click_main() -> None:
    from hamustro_cli.cli import main as click_main

    click_main()


def main() -> None:
    """The console script's entry point (and `python -m hamustro_cli`'s)."""
    import os

    from hamustro_cli.invocation import exit_now, guarded

    call = parse_track(sys.argv[1:], os.environ)
    if call is None:
        guarded(_click_main)  # loading Click is guarded too: it may be what memory runs short for
        return
    exit_now(guarded(lambda: run_fast(*call)))
