"""The `ip` attribute: the local address of the route towards the collector.

Only an IPv4 address is sent unless the user asks for IPv6 (send_ipv6): the collector's
`masked_ip` masks the last octet of an IPv4 address and stores an IPv6 one whole. So `ip =
"auto"` sends the IPv4 source of the route to the collector's IPv4 address (a host name is
resolved IPv4 first); a collector reached only over IPv6 gets no `ip` at all. An IPv4-mapped
IPv6 address (::ffff:192.0.2.7) is sent as the IPv4 address it is.

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


def as_ipv4(text: str) -> str | None:
    """`text` as a dotted IPv4 address: itself, or what an IPv4-mapped IPv6 address maps; None
    for any other address (one the collector cannot mask)."""
    try:
        return socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, text))
    except (OSError, ValueError):
        pass
    try:
        packed = socket.inet_pton(socket.AF_INET6, text)
    except (OSError, ValueError):
        return None
    if packed[:12] == b"\0" * 10 + b"\xff\xff":
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    return None


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


def url_problem(url: str) -> str | None:
    """What keeps an http(s) URL from being a collector_url, or None. The message never quotes
    user info (it may hold a password). Events go to {collector_url}/api/v1/track, so a query
    string or fragment would end up in the middle of the path, and user info would be sent
    to the collector in clear: both are refused."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return "expected an http:// or https:// URL with a host"
    if "?" in rest or "#" in rest:
        return "must not have a query string or fragment (events go to {collector_url}/api/v1/track)"
    netloc = rest.split("/", 1)[0]
    if "@" in netloc:
        return "must not hold user info (user:password@); the collector authenticates by the shared secret"
    if not netloc:
        return "expected an http:// or https:// URL with a host"
    if netloc.startswith("["):
        host, closed, tail = netloc[1:].partition("]")
        if not closed:
            return "unclosed [ in the host (an IPv6 address is written [::1])"
        if ":" not in host or not valid_ip(host):
            return f"[{host}] is not an IPv6 address"
    elif "[" in netloc or "]" in netloc:
        return "brackets belong around an IPv6 address only, as in http://[::1]:8080"
    else:
        host, colon, tail = netloc.partition(":")
        tail = colon + tail
        if ":" in tail[1:]:
            return "an IPv6 address must be in brackets, as in http://[::1]:8080"
    if tail:
        if not tail.startswith(":"):
            return f"unexpected {tail!r} after the host"
        digits = tail[1:]
        if digits and not (digits.isascii() and digits.isdigit() and len(digits) <= 5):
            return f"port {digits!r} is not a number in 1..65535"
    return host_problem(*split_url(url))


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
    if sep and not tail:  # "host:" is the default port
        return host, port
    return netloc, port


def route_source(remote_ip: str, port: int) -> str | None:
    """Local IPv4 address the kernel would use towards remote_ip (no packet is sent); None for a
    route over IPv6, whose source address the collector would store unmasked."""
    family = socket.AF_INET6 if ":" in remote_ip else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM)
    except OSError:
        return None
    try:
        sock.connect((remote_ip, port or 9))
        return as_ipv4(sock.getsockname()[0])
    except OSError:
        return None
    finally:
        sock.close()


def resolve(host: str, port: int) -> str | None:
    """DNS lookup for flush (which may wait), an IPv4 address first (see above); None when the
    name does not resolve."""
    if valid_ip(host):
        return host
    for family in (socket.AF_INET, socket.AF_UNSPEC):
        try:
            infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            continue
        if infos:
            return str(infos[0][4][0])
    return None
