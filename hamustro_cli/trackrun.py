"""What `hamustro track` does once its arguments are parsed, by Click (cli.track) or by the fast
parser (entry.py): the one home of its rules, so both ways agree. The hot path: what this
module imports at its top, every `track` pays for (ARCHITECTURE.md: Keeping track light)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from hamustro_cli.caps import EventsDropped
from hamustro_cli.disabled import tracking_disabled
from hamustro_cli.errors import InputError
from hamustro_cli.log import ERROR, WARNING

if TYPE_CHECKING:
    from hamustro_cli.invocation import GlobalOptions
    from hamustro_cli.log import Log
    from hamustro_cli.tracker import ClientTracker, TrackResult


def run_track(
    obj: GlobalOptions,
    event: str | None,
    user_id: str | None,
    params: str | None,
    param_pairs: tuple[str, ...],
    testing: bool,
    at: str | None,
    ip: str | None,
    flush: bool | None,
    from_stdin: bool,
    as_json: bool,
) -> None:
    """Queue one event (or --stdin's) durably, then flush if the protocol's triggers fire;
    library errors (HamustroError) are the caller's to show with their exit code."""
    from hamustro_cli import events

    if from_stdin:
        if event is not None or user_id or params or param_pairs or testing or at:
            raise InputError(
                "--stdin takes events from standard input only: give no EVENT, "
                "--user-id, --params, --param, --testing or --at with it"
            )
    elif event is None:
        raise InputError("missing EVENT (or use --stdin)")
    events.check_params_form(params, param_pairs)
    if tracking_disabled():  # before the config: nothing is read, checked or queued
        _disabled(from_stdin, as_json)
        return
    tracker = obj.tracker(log=track_log(obj))
    if tracker.flushes_here(flush):
        from hamustro_cli.invocation import quiet_library_logs

        quiet_library_logs()  # this call may send from this process
    if ip is not None:
        events.check_ip(ip, ipv6=tracker.config.values["send_ipv6"])
    try:
        if from_stdin:
            result = tracker.track_lines(_stdin_lines(), ip=ip, flush=flush, source="stdin")
        else:
            from hamustro_cli.tracker import FLAG_NAMES, new_event

            one = new_event(
                event,  # type: ignore[arg-type]
                user_id=user_id,
                params=events.params_from_pairs(param_pairs) if param_pairs else params,
                is_testing=testing,
                at=at,
                names=FLAG_NAMES,
            )
            result = tracker.track_many([one], ip=ip, flush=flush)
    except EventsDropped as exc:  # when_full = "drop_newest": what the config asked for, said once
        tracker.close()
        obj.log(WARNING, str(exc))
        return
    except BaseException:
        tracker.close()
        raise
    after_queued(obj, tracker, result, as_json)


def track_log(obj: GlobalOptions) -> Log:
    """The log of a tracker that queues for `track` (and `exec`): what obj.log says, but for the
    error a flush run here meets (the sender's line, which `flush` prints as its error): the
    event is queued and the exit status 0, so after_queued says it once, as the warning "event
    queued, but the flush failed: ...", and no error line contradicts the status."""

    def log(level: int, message: str) -> None:
        if level != ERROR:
            obj.log(level, message)

    return log


def _disabled(from_stdin: bool, as_json: bool) -> None:
    """`track` under HAMUSTRO_DISABLED: standard input read to its end (a writer in a pipeline
    must not die of SIGPIPE), and with --json what was queued: nothing."""
    if from_stdin:
        stream = getattr(sys.stdin, "buffer", sys.stdin)
        try:
            while stream is not None and stream.read(1 << 16):
                pass
        except (OSError, ValueError):  # closed or unreadable: there is nothing to drain
            pass
    if as_json:
        from hamustro_cli.streams import emit_json

        emit_json({"queued": 0, "disabled": True})


def _stdin_lines() -> Iterator[str]:
    """Standard input's lines, decoded as UTF-8 whatever the locale or PYTHONIOENCODING say (bytes
    that are not UTF-8 stay as surrogates, which the checks refuse with the line's number), a
    byte order mark at the very start skipped, CRLF read as LF. A closed or unreadable standard
    input is an input error."""
    import io

    stream = sys.stdin
    binary = getattr(stream, "buffer", None) if stream is not None else None
    if stream is None or (binary is None and not hasattr(stream, "read")):
        raise InputError("--stdin: standard input is closed")
    text = (
        io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape")
        if binary is not None
        else stream
    )
    try:
        yield from text
    except OSError as exc:
        raise InputError(f"--stdin: cannot read standard input ({exc.strerror or exc})") from None
    except ValueError:  # read from a closed file
        raise InputError("--stdin: standard input is closed") from None
    finally:
        if text is not stream and isinstance(text, io.TextIOWrapper):
            try:
                text.detach()  # leave sys.stdin's buffer open
            except ValueError:
                pass


def after_queued(obj: GlobalOptions, tracker: ClientTracker, result: TrackResult, as_json: bool) -> None:
    """Everything `track` does once the events are committed: close the spool, warn, print.
    Nothing here can change the exit status, which is 0: a script that saw a failure would track
    again. Each step is guarded on its own, so a closed or broken stderr does not lose the JSON
    on stdout and the other way round. A reader that went away (EPIPE: `track --json | head -c0`)
    is not an error of track; Python ignores SIGPIPE, so the process is never killed by it."""
    from hamustro_cli.tracker import Outcome

    def guarded(step: Callable[[], None]) -> None:
        try:
            step()
        except Exception:  # noqa: BLE001 - the events are queued: nothing may escape
            pass

    guarded(tracker.close)
    if result.flush == Outcome.HALTED:
        guarded(lambda: obj.log(WARNING, f"event queued, but sending is {result.flush_detail}"))
    if result.flush == Outcome.FAILED:
        guarded(lambda: obj.log(WARNING, f"event queued, but the flush failed: {result.flush_detail}"))
    if as_json:
        try:
            from hamustro_cli.streams import emit_json

            emit_json(result.to_json())
            if sys.stdout is not None:
                sys.stdout.flush()  # here, not at exit, where a broken pipe would still cost status 120
        except Exception:  # noqa: BLE001 - the reader is gone (EPIPE) or stdout is unusable
            _silence(sys.stdout)
            guarded(lambda: obj.log(WARNING, "event queued, but its result could not be printed"))
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:  # noqa: BLE001
            _silence(stream)


def _silence(stream: object) -> None:
    """streams.silence, loaded only when a stream broke (most `track`s print nothing)."""
    try:
        from hamustro_cli.streams import silence
    except Exception:  # noqa: BLE001 - not even a small module loads: nothing more to do
        return
    silence(stream)
