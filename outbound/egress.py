"""Where outbound webhooks may go, and the one way they get there.

A subscription URL is a user-supplied address, so every request to it is checked against
where it would really land: the URL is parsed strictly (http/https, no user-info, no numeric
IPv4 spellings other than dotted-decimal), the host is resolved once, every address it
resolves to must be public (`ipaddress`' `is_global`, and not multicast/reserved/…, looking
inside IPv4-mapped, 6to4 and NAT64 forms) or on the explicit allow-list
`OUTBOUND_WEBHOOK_ALLOWED_NETWORKS`, and the connection is then made to that checked address
(never to the name again), so a DNS answer that changes between the check and the connect
(rebinding) cannot move the request. Host header and TLS SNI/certificate verification still
use the name. Redirects are never followed; HTTP(S)_PROXY variables are not used.

Each request has one overall deadline (the timeout: connect, TLS handshake, request, answer
and the excerpt read together), not only urllib3's per-read timeout, which a receiver
trickling its answer a byte at a time would never trip: at the deadline the socket is shut
down and the call raises DeadlineExceeded (a timeout, retried).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
import socket
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
import urllib3.connection
from django.core.exceptions import ImproperlyConfigured, ValidationError

from . import conf
from . import deadline as deadline_
from .deadline import DeadlineExceeded

logger = logging.getLogger(__name__)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES = {"http": 80, "https": 443}
# The well-known NAT64 prefix (RFC 6052): a gateway turns 64:ff9b::a.b.c.d into a.b.c.d, so
# the embedded IPv4 address is what such an address really reaches. Used only to unwrap it;
# classification itself is ipaddress'.
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
# Letters, digits, hyphens and underscores in dot-separated labels (after IDNA encoding).
HOST_NAME = re.compile(
    r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*"
)
EXCERPT_CHARS = 256
# Enough bytes for 256 characters of UTF-8 text; the rest of the answer is never read.
EXCERPT_READ_BYTES = EXCERPT_CHARS * 4


class Refused(Exception):
    """The URL, or an address it resolves to, is not a place webhooks may go. Permanent."""


class Unresolved(Exception):
    """The name did not resolve (now). Transient."""


@dataclass(frozen=True)
class Target:
    """A parsed webhook URL: what to resolve, where to connect, what to ask for."""

    scheme: str
    host: str  # ASCII (IDNA) name or IP literal, without brackets
    port: int
    request_target: str  # path and query

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == SCHEMES[self.scheme] else f"{host}:{self.port}"

    @property
    def literal(self) -> IPAddress | None:
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None


# --- Parsing ---------------------------------------------------------------------------


def target_parse(url: str) -> Target:
    """Parse a webhook URL strictly; raises Refused with the reason."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Refused(f"Enter a valid URL ({exc}).") from exc
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise Refused("Only http:// and https:// URLs can receive webhooks.")
    if "@" in parts.netloc:
        raise Refused("URLs with a user name or password (user-info) are not accepted.")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise Refused("The URL has no host.")
    if port == 0:
        raise Refused("Port 0 is not a port a webhook can be sent to.")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise Refused("The host name is not a valid domain name.") from exc
        if not HOST_NAME.fullmatch(host):
            raise Refused("The host name is not a valid domain name.") from None
        # After IDNA: fullwidth digits and the like have become ASCII digits by now.
        if _is_numeric_ipv4_spelling(host):
            raise Refused(
                "Write IPv4 addresses in dotted-decimal form (a.b.c.d); decimal, octal, "
                "hexadecimal and shortened spellings are not accepted."
            ) from None
    else:
        if "%" in host:
            raise Refused("IPv6 zone identifiers are not accepted.")
        # ipaddress reads other scripts' digits too; connect only to what ASCII says.
        host = str(ipaddress.ip_address(host))
    request_target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(
        scheme=scheme,
        host=host,
        port=port if port is not None else SCHEMES[scheme],
        request_target=request_target,
    )


def _is_numeric_ipv4_spelling(host: str) -> bool:
    """True for anything the C resolver would read as an IPv4 address (`2130706433`,
    `0177.0.0.1`, `127.1`, `0x7f.1`) that is not plain dotted-decimal."""
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return True


# --- Classification --------------------------------------------------------------------


def address_problem(address: IPAddress) -> str | None:
    """Why webhooks may not go to this address by default, or None if it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            inner = address_problem(address.ipv4_mapped)
            return f"an IPv4-mapped form of {inner}" if inner else None
        if address.sixtofour is not None:
            inner = address_problem(address.sixtofour)
            if inner:
                return f"a 6to4 form of {inner}"
        if address in NAT64_WELL_KNOWN:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
            inner = address_problem(embedded)
            return f"a NAT64 form of {inner}" if inner else None
    checks = (
        ("is_unspecified", "an unspecified address"),
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_private", "a private address"),
        ("is_reserved", "a reserved address"),
        ("is_site_local", "a site-local address"),
    )
    for attribute, reason in checks:
        if getattr(address, attribute, False):
            return reason
    if not address.is_global:
        # e.g. 100.64.0.0/10, shared address space (carrier-grade NAT).
        return "a shared or otherwise non-public address"
    return None


@dataclass(frozen=True)
class Allowed:
    network: IPNetwork
    port: int | None


@functools.cache
def _parse_allow_list(entries: tuple[str, ...]) -> tuple[Allowed, ...]:
    parsed = []
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        network, port = entry, None
        if entry.startswith("["):
            network, _, rest = entry[1:].partition("]")
            if rest:
                port = rest.removeprefix(":")
        elif entry.count(":") == 1:
            network, port = entry.split(":")
        try:
            parsed.append(
                Allowed(
                    network=ipaddress.ip_network(network, strict=True),
                    port=int(port) if port is not None else None,
                )
            )
        except ValueError as exc:
            raise ImproperlyConfigured(
                f"OUTBOUND_WEBHOOK_ALLOWED_NETWORKS: {raw!r} is not an IP address or CIDR "
                f"network with an optional :port ([IPv6]:port) ({exc})"
            ) from exc
    return tuple(parsed)


def allow_list() -> tuple[Allowed, ...]:
    return _parse_allow_list(tuple(conf.get("OUTBOUND_WEBHOOK_ALLOWED_NETWORKS")))


def address_refusal(address: IPAddress, port: int) -> str | None:
    """Why a webhook may not be sent to address:port, or None if it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified or address.is_multicast:
        # Never a webhook receiver, whatever the allow-list says.
        return address_problem(address)
    problem = address_problem(address)
    if problem is None:
        return None
    for allowed in allow_list():
        same_version = address.version == allowed.network.version
        if same_version and address in allowed.network and allowed.port in (None, port):
            return None
    return f"{problem}, not in OUTBOUND_WEBHOOK_ALLOWED_NETWORKS"


# --- Resolution ------------------------------------------------------------------------


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (the system resolver; tests patch getaddrinfo)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as exc:
        raise Unresolved(f"{host} does not resolve ({exc})") from exc
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise Unresolved(f"{host} does not resolve")
    return addresses


def addresses_check(target: Target, addresses: Iterable[IPAddress]) -> None:
    """Refuse if any address is not allowed: a name that also points inside is refused."""
    for address in addresses:
        reason = address_refusal(address, target.port)
        if not reason:
            continue
        if target.literal is not None:
            raise Refused(f"{target.host} is {reason}.")
        # The caller is not told which internal address a name has (split-horizon DNS would
        # otherwise be readable through this message); the log says.
        logger.warning(
            "Webhook to %s refused: it resolves to %s (%s)", target.host, address, reason
        )
        raise Refused(f"{target.host} resolves to {reason}.")


def url_check(url: str) -> Target:
    """The check at subscription time: a name that does not resolve yet is accepted (it is
    checked again at every delivery); anything that resolves inside is refused."""
    target = target_parse(url)
    literal = target.literal
    if literal is not None:
        addresses_check(target, [literal])
        return target
    try:
        addresses = resolve(target.host, target.port)
    except Unresolved:
        return target
    addresses_check(target, addresses)
    return target


def validate_url_destination(url: str) -> None:
    """Django validator: a field-level error for a URL webhooks may not be sent to."""
    try:
        url_check(url)
    except Refused as exc:
        raise ValidationError(str(exc), code="forbidden_destination") from exc


# --- Sending ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    headers: urllib3.HTTPHeaderDict
    excerpt: str


def excerpt(raw: bytes) -> str:
    """A short printable excerpt of a response body: control characters dropped (line
    breaks and tabs become spaces), at most EXCERPT_CHARS characters."""
    text = raw.decode("utf-8", errors="replace")
    kept = []
    for char in text:
        if char in "\t\n\r":
            kept.append(" ")
        elif unicodedata.category(char)[0] != "C":
            kept.append(char)
    return "".join(kept).strip()[:EXCERPT_CHARS]


def _pool(
    target: Target, address: IPAddress, timeout: float, deadline: deadline_.Deadline
) -> urllib3.HTTPConnectionPool:
    options = {
        "host": str(address),
        "port": target.port,
        "timeout": urllib3.Timeout(connect=timeout, read=timeout),
        "retries": False,
        "maxsize": 1,
        # Passed on to the connection class.
        "deadline": deadline,
    }
    if target.scheme == "https":
        ca_bundle = conf.get("OUTBOUND_WEBHOOK_CA_BUNDLE") or None
        pool = urllib3.HTTPSConnectionPool(
            **options,
            # SNI and certificate verification for the name, while the socket goes to the
            # checked address.
            server_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_bundle or _default_ca_bundle(),
        )
        pool.ConnectionCls = deadline_.WatchedHTTPSConnection
        return pool
    pool = urllib3.HTTPConnectionPool(**options)
    pool.ConnectionCls = deadline_.WatchedHTTPConnection
    return pool


def _default_ca_bundle() -> str:
    # The same trust store requests used (certifi, a requests dependency).
    from requests.certs import where

    return where()


def post(
    *, url: str, body: bytes, headers: dict[str, str], timeout: float
) -> tuple[Answer, IPAddress]:
    """POST to the URL at a checked address, all of it (connect, TLS, request, answer and
    excerpt) within `timeout` seconds. Raises Refused, Unresolved, DeadlineExceeded or
    urllib3's errors (timeouts, connection errors, TLS errors) when nothing came back."""
    target = target_parse(url)
    literal = target.literal
    addresses = [literal] if literal is not None else resolve(target.host, target.port)
    addresses_check(target, addresses)
    with deadline_.Deadline(timeout) as deadline:
        try:
            return _post_to(target, addresses, body, headers, timeout, deadline)
        except DeadlineExceeded:
            raise
        except Exception as exc:
            # Whatever the shut-down socket made of it (a reset, an EOF, a TLS error), the
            # cause is the deadline.
            if deadline.expired:
                raise DeadlineExceeded(f"no answer within {timeout:g} s") from exc
            raise


def _post_to(
    target: Target,
    addresses: list[IPAddress],
    body: bytes,
    headers: dict[str, str],
    timeout: float,
    deadline: deadline_.Deadline,
) -> tuple[Answer, IPAddress]:
    last_error: Exception | None = None
    for address in addresses:
        deadline.check()
        pool = _pool(target, address, timeout, deadline)
        try:
            response = pool.urlopen(
                "POST",
                target.request_target,
                body=body,
                headers={**headers, "Host": target.host_header},
                redirect=False,
                retries=False,
                preload_content=False,
                assert_same_host=False,
            )
        except urllib3.exceptions.NewConnectionError as exc:
            # Not reachable at this address; the name may have others (IPv6 and IPv4).
            last_error = exc
            pool.close()
            continue
        try:
            try:
                raw = response.read(EXCERPT_READ_BYTES, decode_content=True) or b""
            except Exception:  # a broken body does not change the status we already have
                raw = b""
            # A body cut short by the deadline is a timeout, not a shorter excerpt.
            deadline.check()
            return Answer(response.status, response.headers, excerpt(raw)), address
        finally:
            response.release_conn()
            response.close()
            pool.close()
    assert last_error is not None
    raise last_error
