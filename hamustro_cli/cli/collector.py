"""`hamustro collector`: the local collector (collector.py) from the command line."""

from __future__ import annotations

import sys
import threading
from typing import Any

import click

from hamustro_cli.cli.options import GlobalOptions, complete_file, help_option
from hamustro_cli.config import SECRET_KEY, env_name
from hamustro_cli.log import count


@click.command(add_help_option=False, short_help="Run a local test collector that prints what it accepts.")
@help_option
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar=env_name("host"),
    help="Address to listen on ($HAMUSTRO_HOST).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    envvar=env_name("port"),
    help="Port to listen on; 0 picks a free one ($HAMUSTRO_PORT).",
)
@click.option(
    "--secret",
    envvar=env_name(SECRET_KEY),
    required=True,
    help="Shared secret that signs requests ($HAMUSTRO_SHARED_SECRET_KEY; prefer it "
    "to the flag, which other users can see).",
)
@click.option(
    "--out",
    type=click.File("a", lazy=False),
    default="-",
    shell_complete=complete_file,
    help="Where accepted events go, one JSON line each (default: standard output).",
)
@click.option(
    "--fail-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Answer --fail-status to this share of valid requests (for trying failures).",
)
@click.option(
    "--fail-status",
    type=click.IntRange(100, 599),
    default=503,
    show_default=True,
    help="Status used by --fail-rate.",
)
@click.option(
    "--reject-event",
    multiple=True,
    metavar="NAME",
    help="Answer 400 to collections that hold this event (for trying rejects).",
)
@click.option("--delay", type=click.FloatRange(0), default=0.0, help="Hold each request this many seconds.")
@click.option("--verbose-errors", is_flag=True, help='Error bodies as {"error": "..."} (verbose mode).')
@click.pass_obj
def collector(
    obj: GlobalOptions,
    host: str,
    port: int,
    secret: str,
    out: Any,
    fail_rate: float,
    fail_status: int,
    reject_event: tuple[str, ...],
    delay: float,
    verbose_errors: bool,
) -> None:
    """Run a local collector that answers as the real one and writes accepted events as JSON lines.

    \b
    Examples:
      HAMUSTRO_SHARED_SECRET_KEY=s hamustro collector --port 8080 --out events.jsonl
      HAMUSTRO_SHARED_SECRET_KEY=s hamustro collector --port 8080 --reject-event spam
    """
    import signal

    from hamustro_cli.collector import make_server

    try:
        server = make_server(
            host,
            port,
            secret,
            out,
            verbose=verbose_errors,
            fail_rate=fail_rate,
            fail_status=fail_status,
            reject_events=reject_event,
            delay=delay,
            log=sys.stderr if obj.verbose else None,
        )
    except OSError as exc:
        bare = host.strip("[]")
        where = f"[{bare}]:{port}" if ":" in bare else f"{bare}:{port}"  # as a URL writes IPv6
        raise click.ClickException(f"cannot listen on {where}: {exc.strerror}") from None

    def stop(signum: int, frame: Any) -> None:
        # serve_forever ends between two requests (an exception raised here could lose one just
        # accepted); a second signal stops at once
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)  # before saying it listens: a SIGTERM then winds down
    signal.signal(signal.SIGINT, stop)
    click.echo(f"hamustro collector listening on {server.url}", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        try:
            server.wind_down()
        except KeyboardInterrupt:  # asked twice: stop answering
            server.server_close()
        click.echo(f"hamustro collector stopped after {count(server.accepted, 'event')}", err=True)
