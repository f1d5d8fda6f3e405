"""What a token may do (SPEC §10): its scopes and its allowed addresses, read once.

Both sides use these parsers: the admin API checks what a client sends with them and
stores the canonical text they return; the gateway compiles the stored text into
matchers when it caches a token (:mod:`gateway.proxy.capabilities`). A scope is
``<METHOD or *> <path prefix>``; an allowed address is an IPv4/IPv6 address or CIDR
block.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Final, NamedTuple

SCOPES_MAX: Final = 20
ALLOWED_IPS_MAX: Final = 50
ANY_METHOD: Final = "*"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# RFC 9110 method token; uppercased by the parser.
_METHOD: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}")
_PATH_MAX: Final = 1000


class Scope(NamedTuple):
    method: str  # uppercase, or "*" for any
    prefix: str  # starts with "/"

    def __str__(self) -> str:
        return f"{self.method} {self.prefix}"


def parse_scope(text: str) -> Scope:
    """``"GET /v1/validate"`` read; ValueError says what is wrong (never echoing it)."""
    parts = text.split()
    if len(parts) != 2:
        raise ValueError("must be a method (or *) and a path prefix, such as GET /v1/validate")
    method, prefix = parts
    if method != ANY_METHOD and not _METHOD.fullmatch(method):
        raise ValueError("must start with an HTTP method such as GET, or * for any method")
    if not prefix.startswith("/") or len(prefix) > _PATH_MAX:
        raise ValueError(f"must have a path prefix starting with / (at most {_PATH_MAX} chars)")
    if "?" in prefix or "#" in prefix or not prefix.isprintable() or not prefix.isascii():
        raise ValueError(
            "must have a path prefix of printable ASCII without ? or # (percent-encode others)"
        )
    return Scope(method.upper(), prefix)


def canonical_scope(text: str) -> str:
    return str(parse_scope(text))


def parse_network(text: str) -> Network:
    """An address or CIDR block; ValueError for anything else, host bits included."""
    text = text.strip()
    if not text or "%" in text:  # an IPv6 zone names a local interface, not a client
        raise ValueError("must be an IPv4 or IPv6 address or CIDR block, such as 203.0.113.0/24")
    try:
        network = ipaddress.ip_network(text)
    except ValueError as err:
        if "has host bits set" in str(err):
            loose = ipaddress.ip_network(text, strict=False)
            raise ValueError(f"has host bits set: the block is {loose}") from None
        raise ValueError(
            "must be an IPv4 or IPv6 address or CIDR block, such as 203.0.113.0/24"
        ) from None
    return unmapped_network(network)


def canonical_network(text: str) -> str:
    """The stored form: an address alone when the block holds one, else the CIDR block."""
    network = parse_network(text)
    if network.num_addresses == 1:
        return str(network.network_address)
    return str(network)


def unmapped(address: Address) -> Address:
    """An IPv4 client seen through a dual-stack socket (``::ffff:a.b.c.d``) as IPv4."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def unmapped_network(network: Network) -> Network:
    if (
        isinstance(network, ipaddress.IPv6Network)
        and network.prefixlen >= 96
        and network.network_address.ipv4_mapped is not None
    ):
        mapped = network.network_address.ipv4_mapped
        return ipaddress.IPv4Network((int(mapped), network.prefixlen - 96))
    return network


def parse_address(text: str) -> Address | None:
    """A client address as a proxy writes it in ``X-Forwarded-For``, or None.

    Accepts ``203.0.113.5``, ``2001:db8::1``, and with a port ``203.0.113.5:4711`` or
    ``[2001:db8::1]:4711`` (some load balancers add it); never an IPv6 zone.
    """
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    if not text or "%" in text:
        return None
    try:
        return unmapped(ipaddress.ip_address(text))
    except ValueError:
        return None


def address_value(text: str) -> tuple[int, int] | None:
    """``(version, address as an int)`` of :func:`parse_address`'s forms, or None; plain
    addresses (what a socket reports) go through ``inet_pton``, several times faster."""
    try:
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, text))
    except OSError:
        pass
    if "%" not in text:
        try:
            value = int.from_bytes(socket.inet_pton(socket.AF_INET6, text))
        except OSError:
            pass
        else:
            if value >> 32 == 0xFFFF:  # ::ffff:a.b.c.d, IPv4 through a dual-stack socket
                return 4, value & 0xFFFFFFFF
            return 6, value
    address = parse_address(text)
    return None if address is None else (address.version, int(address))
