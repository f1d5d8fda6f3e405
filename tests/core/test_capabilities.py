"""Reading scopes and allowed addresses (SPEC §10): canonical forms, and one clear problem."""

from __future__ import annotations

import ipaddress
import re

import pytest

from gateway.core.capabilities import (
    address_value,
    canonical_network,
    canonical_scope,
    parse_address,
    parse_network,
)


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("GET /v1/validate", "GET /v1/validate"),
        ("get   /v1/validate", "GET /v1/validate"),
        ("* /v1/status", "* /v1/status"),
        ("POST /", "POST /"),
        ("DELETE /v1/items/", "DELETE /v1/items/"),
        (" PATCH /a%20b ", "PATCH /a%20b"),
    ],
)
def test_scopes_are_stored_canonical(given: str, stored: str) -> None:
    assert canonical_scope(given) == stored


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("/v1/validate", "a method (or *) and a path prefix"),
        ("GET", "a method (or *) and a path prefix"),
        ("GET /a /b", "a method (or *) and a path prefix"),
        ("GE(T /v1", "HTTP method"),
        ("GET v1/validate", "starting with /"),
        ("GET /v1?x=1", "without ? or #"),
        ("GET /v1#top", "without ? or #"),
        ("GET /vé", "printable ASCII"),
        ("GET /" + "a" * 1000, "at most 1000"),
        ("", "a method (or *) and a path prefix"),
    ],
)
def test_bad_scopes_say_what_is_wrong(given: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        canonical_scope(given)


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("203.0.113.0/24", "203.0.113.0/24"),
        ("198.51.100.7", "198.51.100.7"),
        ("198.51.100.7/32", "198.51.100.7"),
        ("2001:db8::/48", "2001:db8::/48"),
        ("2001:0db8:0000::1", "2001:db8::1"),
        ("2001:DB8::1/128", "2001:db8::1"),
        ("::ffff:203.0.113.0/120", "203.0.113.0/24"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("0.0.0.0/0", "0.0.0.0/0"),
    ],
)
def test_networks_are_stored_canonical(given: str, stored: str) -> None:
    assert canonical_network(given) == stored


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("203.0.113.5/24", "host bits set: the block is 203.0.113.0/24"),
        ("2001:db8::1/48", "host bits set: the block is 2001:db8::/48"),
        ("example.com", "IPv4 or IPv6 address or CIDR block"),
        ("256.1.1.1", "IPv4 or IPv6 address or CIDR block"),
        ("10.0.0.0/33", "IPv4 or IPv6 address or CIDR block"),
        ("fe80::1%eth0", "IPv4 or IPv6 address or CIDR block"),
        ("", "IPv4 or IPv6 address or CIDR block"),
    ],
)
def test_bad_networks_say_what_is_wrong(given: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_network(given)


@pytest.mark.parametrize(
    ("written", "address"),
    [
        ("203.0.113.5", "203.0.113.5"),
        (" 203.0.113.5 ", "203.0.113.5"),
        ("203.0.113.5:4711", "203.0.113.5"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]:4711", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("::ffff:203.0.113.5", "203.0.113.5"),
        ("unknown", None),
        ("[2001:db8::1", None),
        ("fe80::1%eth0", None),
        ("", None),
    ],
)
def test_addresses_as_proxies_write_them(written: str, address: str | None) -> None:
    parsed = parse_address(written)
    assert parsed == (None if address is None else ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "written",
    [
        "203.0.113.5",
        "203.0.113.5:4711",
        "2001:db8::1",
        "[2001:db8::1]:4711",
        "::ffff:203.0.113.5",
        "::1",
        "unknown",
        "1",
        "fe80::1%eth0",
        "",
    ],
)
def test_the_fast_address_reading_agrees_with_the_plain_one(written: str) -> None:
    parsed = parse_address(written)
    expected = None if parsed is None else (parsed.version, int(parsed))
    assert address_value(written) == expected
