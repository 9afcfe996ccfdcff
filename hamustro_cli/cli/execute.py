"""`hamustro exec`: run a command, then queue one event saying how it ended (runner.py runs
it; the event is queued by the same code as `track`'s)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from hamustro_cli.cli.options import GlobalOptions, fail, help_option
from hamustro_cli.errors import HamustroError, InputError
from hamustro_cli.invocation import quiet_library_logs
from hamustro_cli.log import ERROR, WARNING

USAGE = "hamustro exec EVENT [OPTIONS] -- CMD [ARG]..."
COMMAND = "hamustro.exec.command"  # where parse_args keeps what follows `--` (click's ctx.meta)
ADDED = ("exit_code", "duration_ms", "signal")  # the params exec adds

if TYPE_CHECKING:
    from hamustro_cli.events import NewEvent
    from hamustro_cli.tracker import ClientTracker


class _ExecCommand(click.Command):
    """Everything after the first `--` is CMD and its arguments, options or not."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            at = args.index("--")
            ctx.meta[COMMAND] = args[at + 1 :]
            args = args[:at]
        return super().parse_args(ctx, args)

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return [*super().collect_usage_pieces(ctx), "-- CMD [ARG]..."]


@click.command(
    cls=_ExecCommand, add_help_option=False, short_help="Run a command, then queue an event with its status."
)
@help_option
@click.argument("event")
@click.option("--user-id", metavar="N", help="User id (0 to 4294967295).")
@click.option("--params", metavar="TEXT", help="Parameters: a JSON object, to which exec adds its own.")
@click.option("--param", "param_pairs", metavar="KEY=VALUE", multiple=True, help="One parameter; repeat it.")
@click.option("--testing", is_flag=True, help="Mark the event as a test event.")
@click.pass_context
def exec_command(
    ctx: click.Context,
    event: str,
    user_id: str | None,
    params: str | None,
    param_pairs: tuple[str, ...],
    testing: bool,
) -> None:
    """Run CMD, then queue EVENT with its exit_code, duration_ms and signal.

    CMD keeps the terminal and the standard streams; a SIGINT, SIGTERM or SIGHUP sent to
    hamustro is passed on to it. Exits with CMD's status: its exit code, 128+N when signal N
    killed it, 127 when it is not found, 126 when it cannot be run. The event is dated when CMD
    started. Tracking trouble (a broken config, an unusable spool) is a warning on stderr: CMD
    runs all the same and its status is kept.

    \b
    Examples:
      hamustro exec backup --param host=db1 -- tar -czf /tmp/etc.tgz -C / etc/hostname
      hamustro exec nightly_report -- sh -c 'date > /tmp/report.txt'
    """
    obj: GlobalOptions = ctx.obj
    argv = ctx.meta.get(COMMAND)
    if not argv:
        raise click.UsageError(f"missing the command to run: {USAGE}", ctx)
    try:
        given = _given_params(params, param_pairs)
        from hamustro_cli.tracker import FLAG_NAMES, new_event

        # checked now, so that a mistake in this command line is found before CMD runs
        one = new_event(event, user_id=user_id, params=None, is_testing=testing, names=FLAG_NAMES)
    except HamustroError as exc:
        fail(exc)
    queue = _tracker(obj, argv[0])
    from hamustro_cli import runner

    ran = runner.run(argv)
    if ran.failed:
        _say(obj, ERROR, ran.failed)
    if queue is not None:
        added: dict[str, Any] = {"exit_code": ran.status, "duration_ms": ran.duration_ms}
        if ran.signal:
            added["signal"] = ran.signal
        _queue(obj, queue, one, {**given, **added})
    ctx.exit(ran.status)


def _given_params(params: str | None, pairs: tuple[str, ...]) -> dict[str, Any]:
    """The params given, as an object (exec adds its own keys to it)."""
    from hamustro_cli.events import check_params, check_params_form, params_from_pairs

    check_params_form(params, pairs)
    if pairs:
        text: str | None = params_from_pairs(pairs)
    else:
        text = check_params(params)
    if text is None:
        return {}
    try:
        given = json.loads(text)
    except ValueError:
        given = None
    if not isinstance(given, dict):
        raise InputError("--params: exec adds exit_code, duration_ms and signal to it: give a JSON object")
    taken = [key for key in ADDED if key in given]
    if taken:
        flag = "--param" if pairs else "--params"
        raise InputError(f"{flag} {taken[0]}: exec sets it (CMD's {taken[0].replace('_', ' ')})")
    return given


def _tracker(obj: GlobalOptions, command: str) -> ClientTracker | None:
    """The tracker that queues the event, from the config read before CMD runs (a broken one is
    said at once); None when tracking is disabled or the config cannot be used."""
    from hamustro_cli.disabled import tracking_disabled

    if tracking_disabled():
        return None
    try:
        from hamustro_cli.trackrun import track_log

        quiet_library_logs()  # its track may flush here
        return obj.tracker(log=track_log(obj))
    except Exception as exc:  # noqa: BLE001 - nothing may stop CMD: a config error or worse
        _warn(obj, f"{command} runs, but its event cannot be queued", exc)
        return None


def _queue(obj: GlobalOptions, tracker: ClientTracker, one: NewEvent, params: dict[str, Any]) -> None:
    """Queue the event as `track` does (its checks, its triggers and flush, its warnings)."""
    from hamustro_cli.events import check_params
    from hamustro_cli.trackrun import after_queued

    try:
        try:
            event = one._replace(parameters=check_params(params))
            result = tracker.track_many([event])
        except BaseException:
            tracker.close()
            raise
    except Exception as exc:  # noqa: BLE001 - CMD's status stands whatever tracking met
        _warn(obj, "the event was not queued", exc)
        return
    after_queued(obj, tracker, result, as_json=False)


def _warn(obj: GlobalOptions, what: str, exc: Exception) -> None:
    """One warning line; an error of ours says itself, anything else only its kind (its text
    could hold anything, the secret included)."""
    why = str(exc) if isinstance(exc, HamustroError) else f"{type(exc).__name__}"
    _say(obj, WARNING, f"{what}: {why}")


def _say(obj: GlobalOptions, level: int, message: str) -> None:
    try:
        obj.log(level, message)
    except Exception:  # noqa: BLE001, S110 - a closed stderr must not change CMD's status
        pass
