"""A token's scopes and allowed addresses, compiled once per cached state, checked per request.

:func:`compile_rules` turns the stored text (``gateway.core.capabilities``' canonical
forms) into a :class:`Rules` when the authenticator caches a token's state, so no
request parses a CIDR block or a scope. A token with neither gets ``None`` and costs
the request path nothing. Scopes become one regular expression per method,
blocks a set per netmask. Each check remembers its last answers (a client usually
sends the same few method/path pairs from the same address), so a repeated request
costs one dict lookup however many scopes and blocks the token has.

Paths are compared percent-decoded, on both sides: ``/v1/%76alidate`` is
``/v1/validate`` to most upstreams, so it must be to the scope check too. (Paths that
could climb out with dot segments were refused before, by the forwarder.)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Final, TypeVar
from urllib.parse import unquote

from gateway.core.capabilities import ANY_METHOD, address_value, parse_network, parse_scope
from gateway.core.errors import Forbidden

log = logging.getLogger(__name__)
K = TypeVar("K")

MEMO_MAX: Final = 1024  # remembered answers per token and check; then they start again

_CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="tollgate", error="insufficient_scope"'}


def insufficient_scope() -> Forbidden:
    return Forbidden(
        "this token's scopes do not cover this method and path",
        code="insufficient_scope",
        headers=_CHALLENGE,
    )


def ip_not_allowed() -> Forbidden:
    return Forbidden("this token may not be used from this address", code="ip_not_allowed")


class Rules:
    """What one token may do: ``check`` raises the 403 to answer, or returns."""

    __slots__ = ("_addresses", "_any_method", "_by_method", "_networks", "_paths")

    def __init__(self, scopes: Sequence[str], allowed_ips: Sequence[str]) -> None:
        # One regular expression per method (and one for "*"): the prefixes as alternatives,
        # each followed by the end of the path or a "/" unless it ends in "/" itself.
        self._by_method: dict[str, re.Pattern[str]] | None = None
        self._any_method: re.Pattern[str] | None = None
        if scopes:
            by_method: dict[str, list[str]] = {}
            for text in scopes:
                scope = parse_scope(text)
                by_method.setdefault(scope.method, []).append(unquote(scope.prefix))
            any_method = by_method.pop(ANY_METHOD, None)
            self._any_method = None if any_method is None else _prefixes(any_method)
            self._by_method = {method: _prefixes(p) for method, p in by_method.items()}
        # Blocks grouped by (version, netmask): one mask and one set lookup per group.
        self._networks: tuple[tuple[int, int, frozenset[int]], ...] | None = None
        if allowed_ips:
            groups: dict[tuple[int, int], set[int]] = {}
            for network in map(parse_network, allowed_ips):
                key = (network.version, int(network.netmask))
                groups.setdefault(key, set()).add(int(network.network_address))
            self._networks = tuple((v, mask, frozenset(n)) for (v, mask), n in groups.items())
        self._paths: dict[tuple[str, str], bool] = {}
        self._addresses: dict[str | None, bool] = {}

    def check(self, method: str, path: str, address: str | None) -> None:
        """Address first: a client that may not use the token learns nothing of its scopes."""
        if self._networks is not None:
            allowed = self._addresses.get(address)
            if allowed is None:
                allowed = self._remember(self._addresses, address, self._allows_address(address))
            if not allowed:
                raise ip_not_allowed()
        if self._by_method is not None:
            key = (method, path)
            allowed = self._paths.get(key)
            if allowed is None:
                allowed = self._remember(self._paths, key, self._allows(method, path))
            if not allowed:
                raise insufficient_scope()

    def _allows(self, method: str, path: str) -> bool:
        assert self._by_method is not None
        if "%" in path:
            path = unquote(path)
        pattern = self._by_method.get(method)
        if pattern is not None and pattern.match(path):
            return True
        return self._any_method is not None and self._any_method.match(path) is not None

    def _allows_address(self, text: str | None) -> bool:
        assert self._networks is not None
        address = None if text is None else address_value(text)
        if address is None:  # no usable client address: nothing to allow
            return False
        version, value = address
        return any(v == version and value & mask in nets for v, mask, nets in self._networks)

    @staticmethod
    def _remember(memo: dict[K, bool], key: K, allowed: bool) -> bool:
        if len(memo) >= MEMO_MAX:
            memo.clear()
        memo[key] = allowed
        return allowed


def _prefixes(prefixes: Sequence[str]) -> re.Pattern[str]:
    """A pattern matching the paths (from their start) that any of ``prefixes`` covers."""
    alternatives = (re.escape(p) if p.endswith("/") else f"{re.escape(p)}(?:/|$)" for p in prefixes)
    return re.compile("|".join(f"(?:{a})" for a in alternatives))


def compile_rules(scopes: Sequence[str], allowed_ips: Sequence[str]) -> Rules | None:
    """The compiled rules of a token, or None when it may do anything from anywhere."""
    if not scopes and not allowed_ips:
        return None
    try:
        return Rules(scopes, allowed_ips)
    except ValueError:
        # Stored by hand, past the admin API's checks: refuse rather than allow anything.
        log.warning("a token has unreadable scopes or allowed_ips; refusing its requests")
        return Rules((), ("0.0.0.0/32", "::/128"))
