"""The `ip` attribute: the local address of the route towards the collector.

Found by connecting a UDP socket, which sends no packet, to the collector's address. `track`
never waits on DNS: for a host name it uses the address the last flush resolved (cached in
the spool); until a flush has resolved it, the event is stored with an empty marker and the
flush fills in the address it finds.
"""

from __future__ import annotations

# _socket, not socket: socket.py costs `track` about 2 ms of imports (selectors, enum
# conversions) for nothing these few calls need. Both are CPython's own, always present.
import _socket as socket

UNKNOWN = ""  # stored for ip = "auto" when the route is not known yet; a flush fills it in


def valid_ip(text: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, text)
            return True
        except (OSError, ValueError):
            continue
    return False


def host_problem(host: str, port: int) -> str | None:
    """What is wrong with a URL's host and port, or None (checked when the config loads, so a
    malformed host is a config error rather than a failure deep inside a flush)."""
    if not 0 < port < 65536:
        return f"port {port} is outside 1..65535"
    if not host:
        return "the URL has no host"
    if valid_ip(host):
        return None
    if len(host) > 253 or not all(
        0 < len(label) <= 63 and label.replace("-", "").replace("_", "").isalnum() and label.isascii()
        for label in host.rstrip(".").split(".")
    ):
        return f"{host!r} is not a valid host name"
    return None


def split_url(url: str) -> tuple[str, int]:
    """Host and port of an http(s) URL, without importing urllib."""
    scheme, _, rest = url.partition("://")
    netloc = rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
    port = 443 if scheme.lower() == "https" else 80
    if netloc.startswith("["):
        host, _, tail = netloc[1:].partition("]")
        if tail.startswith(":") and tail[1:].isdigit():
            port = int(tail[1:])
        return host, port
    host, sep, tail = netloc.rpartition(":")
    if sep and tail.isdigit():
        return host, int(tail)
    return netloc, port


def route_source(remote_ip: str, port: int) -> str | None:
    """Local address the kernel would use towards remote_ip; no packet is sent."""
    family = socket.AF_INET6 if ":" in remote_ip else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM)
    except OSError:
        return None
    try:
        sock.connect((remote_ip, port or 9))
        return sock.getsockname()[0]
    except OSError:
        return None
    finally:
        sock.close()


def resolve(host: str, port: int) -> str | None:
    """DNS lookup for flush (which may wait); None when the name does not resolve."""
    if valid_ip(host):
        return host
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return None
    return infos[0][4][0] if infos else None
