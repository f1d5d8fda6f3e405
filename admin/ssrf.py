"""Where a webhook may send: public addresses only, unless ``WEBHOOK_ALLOW_PRIVATE``.

A webhook URL is the seller's to choose, and the admin instance sends to it from inside
its own network: without a guard, a URL could reach the database, a cloud metadata
service or any internal API. So a URL's host is resolved and *every* address it has must
be public, at creation (400 ``webhook_url_not_allowed``) and again at each delivery, since
DNS can change. At delivery the connection then goes to the addresses just checked (the
guard is the HTTP client's resolver), so a name cannot be rebound between the check and
the connect.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the addresses it resolves to, as text.
Lookup = Callable[[str, int], Awaitable[list[str]]]

# Cloud metadata services. All are in ranges refused anyway (link-local, unique-local,
# CGNAT, IETF protocol assignments); named so the refusal says what they are.
METADATA: Final = frozenset(
    ipaddress.ip_address(text)
    for text in (
        "169.254.169.254",  # AWS, GCP, Azure, DigitalOcean, OpenStack
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
    )
)
_CGNAT: Final = ipaddress.ip_network("100.64.0.0/10")
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")

_NUMERIC: Final = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV


class NotAllowed(Exception):
    """A URL whose host is, or resolves to, an address webhooks may not reach."""


class Unresolvable(Exception):
    """A URL whose host name does not resolve."""


def refusal(address: Address) -> str | None:
    """Why a webhook may not connect to ``address``, or None for a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv4 address inside an IPv6 one reaches that IPv4 address.
        inner = address.ipv4_mapped or address.sixtofour
        if inner is None and address in _NAT64:
            inner = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if inner is not None:
            return refusal(inner)
    checks = (
        (address in METADATA, "a cloud metadata address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_unspecified, "the unspecified address"),
        (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT, "a CGNAT address"),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
        (not address.is_global, "a reserved address"),  # documentation, benchmarking, ...
    )
    return next((reason for refused, reason in checks if refused), None)


async def system_lookup(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def literal(host: str) -> Address | None:
    """The address ``host`` spells, or None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


class Guard:
    """Checks the addresses of webhook URLs; ``allow_private`` lets every address through."""

    def __init__(self, *, allow_private: bool, lookup: Lookup = system_lookup) -> None:
        self.allow_private = allow_private
        self._lookup = lookup

    def check(self, host: str, address: Address) -> None:
        reason = None if self.allow_private else refusal(address)
        if reason is not None:
            raise NotAllowed(
                f"{host} is {reason}" if str(address) == host else f"{host} resolves to {reason}"
            )

    async def addresses(self, host: str, port: int) -> list[Address]:
        """Every address of ``host``, each checked; NotAllowed or Unresolvable otherwise."""
        given = literal(host)
        if given is not None:
            found = [given]
        else:
            try:
                texts = await self._lookup(host, port)
            except (OSError, UnicodeError):  # socket.gaierror is an OSError
                raise Unresolvable(f"{host} does not resolve") from None
            # A scoped IPv6 address ("fe80::1%eth0") is link-local: refused below.
            found = [ipaddress.ip_address(text.split("%", 1)[0]) for text in texts]
            if not found:
                raise Unresolvable(f"{host} does not resolve")
        for address in found:
            self.check(host, address)
        return found

    async def check_url(self, url: str) -> None:
        parsed = URL(url)
        assert parsed.host is not None and parsed.port is not None  # checked by the caller
        await self.addresses(parsed.host, parsed.port)

    def resolver(self) -> AbstractResolver:
        """For the delivery client: it connects to what this guard resolved and checked."""
        return _GuardedResolver(self)


class _GuardedResolver(AbstractResolver):
    def __init__(self, guard: Guard) -> None:
        self._guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        checked = await self._guard.addresses(host, port)
        wanted = {socket.AF_INET: 4, socket.AF_INET6: 6}.get(family)
        return [
            ResolveResult(
                hostname=host,
                host=str(address),
                port=port,
                family=socket.AF_INET if address.version == 4 else socket.AF_INET6,
                proto=0,
                flags=_NUMERIC,
            )
            for address in checked
            if wanted is None or address.version == wanted
        ]

    async def close(self) -> None:
        """Nothing to release."""
