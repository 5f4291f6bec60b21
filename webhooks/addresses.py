"""Receiver address checks against SSRF. A URL is resolved once; every address it resolves to must
be allowed, and the delivery then connects to the address that was checked, so a DNS answer that
changes between the check and the connection (rebinding) cannot redirect it.

Python 3.11.7's `ipaddress` has wrong `is_private`/`is_global` ranges (CVE-2024-4032: for
instance `::7f00:1`, `64:ff9b::7f00:1` and `2002:7f00:1::` count as global), so an address must
be global *and* outside an explicit deny list, after unwrapping the IPv6 forms that embed an IPv4
address."""

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DENIED_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "0.0.0.0/8",  # "this network", 0.0.0.0 unspecified
        "10.0.0.0/8",
        "100.64.0.0/10",  # CGNAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata 169.254.169.254
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
        "::/96",  # unspecified, loopback, IPv4-compatible (deprecated)
        "::ffff:0:0/96",  # IPv4-mapped (unwrapped before, refused if not)
        "64:ff9b::/96",  # NAT64 (unwrapped before)
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard
        "2001::/23",  # IETF protocol assignments, Teredo
        "2001:db8::/32",  # documentation
        "2002::/16",  # 6to4 (unwrapped before)
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class AddressRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class CheckedAddress:
    """A URL and the one address a delivery connects to."""

    scheme: str
    host: str
    port: int
    ip: IPAddress
    target: str  # path and query

    @property
    def url(self) -> str:
        """The URL with the checked address in place of the host name."""
        ip = f"[{self.ip}]" if self.ip.version == 6 else str(self.ip)
        return f"{self.scheme}://{ip}:{self.port}{self.target}"

    @property
    def host_header(self) -> str:
        default = {"http": 80, "https": 443}[self.scheme]
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries: IPv4-mapped, 6to4, NAT64 or Teredo's client."""
    if address.version == 4:
        return None
    if address.ipv4_mapped:
        return address.ipv4_mapped
    if address.sixtofour:
        return address.sixtofour
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.teredo:
        return address.teredo[1]
    return None


def _allowed_networks() -> list[IPNetwork]:
    return [ipaddress.ip_network(cidr.strip()) for cidr in settings.WEBHOOK_ALLOWED_NETWORKS]


def address_refusal(address: IPAddress) -> str | None:
    """Why a delivery may not connect to `address`, or None when it may."""
    candidates = [address]
    inner = embedded_ipv4(address)
    if inner is not None:
        candidates.append(inner)
    allowed = _allowed_networks()
    if any(candidate in network for candidate in candidates for network in allowed):
        return None
    for candidate in candidates:
        if not candidate.is_global or any(candidate in network for network in DENIED_NETWORKS):
            return "not a public address"
    return None


def url_check(url: str) -> CheckedAddress:
    """Resolves the URL's host once and returns the address to connect to; raises AddressRefused
    when the URL is malformed, not https (unless WEBHOOK_ALLOW_HTTP) or resolves to any address
    that is not allowed."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise AddressRefused(f"not a valid URL: {error}") from error
    allowed_schemes = ("https", "http") if settings.WEBHOOK_ALLOW_HTTP else ("https",)
    if parts.scheme not in allowed_schemes:
        raise AddressRefused(f"the URL must use {' or '.join(allowed_schemes)}")
    if not parts.hostname:
        raise AddressRefused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise AddressRefused("the URL may not carry credentials")
    port = port or {"http": 80, "https": 443}[parts.scheme]
    try:
        # getaddrinfo also accepts 2130706433, 0x7f000001, 0177.0.0.1 and 127.1; the check looks
        # at what they resolve to, so every spelling meets the same rules.
        resolved = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError) as error:  # ValueError: UnicodeError, a NUL in the name
        raise AddressRefused(f"{parts.hostname} does not resolve") from error
    addresses = list(
        dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in resolved)
    )
    if not addresses:
        raise AddressRefused(f"{parts.hostname} does not resolve")
    for address in addresses:
        refusal = address_refusal(address)
        if refusal:
            raise AddressRefused(f"{parts.hostname} resolves to {address}: {refusal}")
    target = parts.path or "/"
    if parts.query:
        target += f"?{parts.query}"
    return CheckedAddress(
        scheme=parts.scheme, host=parts.hostname, port=port, ip=addresses[0], target=target
    )
