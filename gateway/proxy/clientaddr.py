"""The client's address, and the ``X-Forwarded-For`` sent upstream (SPEC §10).

Without ``TRUSTED_PROXIES`` the client is the TCP peer and the upstream's
``X-Forwarded-For`` is the peer alone: whatever a client writes in that header is
dropped, so it cannot pass for another address. With it, and a peer inside it, the
header is read right to left, skipping the trusted proxies: the first address that is
not one is the client (the standard "right-most untrusted" rule: entries left of it
were written by the client itself, and could say anything). The header sent upstream
is then the chain from that client on, plus the peer, so the upstream's left-most
entry is the client the gateway decided on.

An entry that is not an address stops the walk: the client is then the last trusted
proxy seen, which an allowlist of client addresses does not name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, NamedTuple

from multidict import MultiMapping

from gateway.core.capabilities import Network, address_value, parse_address

MEMO_MAX: Final = 4096  # remembered peers; then they start again


class Client(NamedTuple):
    address: str | None  # what allowlists are checked against
    forwarded_for: str | None  # the X-Forwarded-For sent upstream


class ClientAddresses:
    def __init__(self, trusted: Sequence[Network]) -> None:
        self._trusted = tuple((n.version, int(n.network_address), int(n.netmask)) for n in trusted)
        self._peers: dict[str, bool] = {}

    def resolve(self, peer: str | None, headers: MultiMapping[str]) -> Client:
        if not self._trusted or peer is None or not self._trusted_peer(peer):
            return Client(peer, peer)
        chain = [
            entry.strip()
            for value in headers.getall("X-Forwarded-For", ())
            for entry in value.split(",")
        ]
        chain = [entry for entry in chain if entry]
        client = peer
        start = len(chain)
        while start > 0:
            address = parse_address(chain[start - 1])
            if address is None:
                break
            start -= 1
            client = str(address)
            if not self.trusts(address.version, int(address)):
                break
        return Client(client, ", ".join([*chain[start:], peer]))

    def trusts(self, version: int, value: int) -> bool:
        return any(v == version and value & mask == net for v, net, mask in self._trusted)

    def _trusted_peer(self, peer: str) -> bool:
        trusted = self._peers.get(peer)
        if trusted is None:
            address = address_value(peer)
            trusted = address is not None and self.trusts(*address)
            if len(self._peers) >= MEMO_MAX:
                self._peers.clear()
            self._peers[peer] = trusted
        return trusted
