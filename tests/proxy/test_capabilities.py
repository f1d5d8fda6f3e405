"""The compiled rules of a token and the client address behind proxies, as pure functions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from gateway.core.capabilities import parse_network
from gateway.core.errors import Forbidden
from gateway.proxy.capabilities import MEMO_MAX, compile_rules
from gateway.proxy.clientaddr import Client, ClientAddresses


def refusal(rules: object, method: str, path: str, address: str | None) -> str | None:
    """The code the rules refuse with, or None when they allow."""
    assert rules is not None
    try:
        rules.check(method, path, address)  # type: ignore[attr-defined]
    except Forbidden as err:
        return err.code
    return None


@pytest.mark.parametrize(
    ("prefix", "path", "covered"),
    [
        ("/v1/validate", "/v1/validate", True),
        ("/v1/validate", "/v1/validate/x", True),
        ("/v1/validate", "/v1/validate/", True),
        ("/v1/validate", "/v1/validated", False),
        ("/v1/validate", "/v1/valid", False),
        ("/v1/validate", "/v1", False),
        ("/v1/items/", "/v1/items/3", True),
        ("/v1/items/", "/v1/items", False),
        ("/", "/anything/at/all", True),
        ("/", "/", True),
    ],
)
def test_a_prefix_covers_itself_and_what_continues_it_after_a_slash(
    prefix: str, path: str, covered: bool
) -> None:
    assert covers(prefix, path) is covered
    rules = compile_rules([f"GET {prefix}"], [])
    assert (refusal(rules, "GET", path, None) is None) is covered


def covers(prefix: str, path: str) -> bool:
    """SPEC §10's rule, written plainly: the reference the compiled patterns must agree with."""
    if not path.startswith(prefix):
        return False
    return len(path) == len(prefix) or prefix.endswith("/") or path[len(prefix)] == "/"


_SEGMENTS = st.lists(
    st.sampled_from(["v1", "v", "validate", "validated", "a.b", "x", ""]), max_size=4
)


@given(
    prefixes=st.lists(_SEGMENTS.map(lambda s: "/" + "/".join(s)), min_size=1, max_size=5),
    path=_SEGMENTS.map(lambda s: "/" + "/".join(s)),
)
def test_compiled_scopes_agree_with_the_rule(prefixes: list[str], path: str) -> None:
    rules = compile_rules([f"GET {p}" for p in prefixes], [])
    expected = any(covers(p, path) for p in prefixes)
    assert (refusal(rules, "GET", path, None) is None) is expected


def test_no_scopes_and_no_addresses_compile_to_nothing() -> None:
    assert compile_rules([], []) is None


def test_methods_must_match_unless_the_scope_says_any() -> None:
    rules = compile_rules(["GET /v1/validate", "* /v1/status"], [])
    assert refusal(rules, "GET", "/v1/validate/x", None) is None
    assert refusal(rules, "POST", "/v1/validate", None) == "insufficient_scope"
    assert refusal(rules, "HEAD", "/v1/validate", None) == "insufficient_scope"
    assert refusal(rules, "DELETE", "/v1/status/1", None) is None
    assert refusal(rules, "GET", "/v1/statuses", None) == "insufficient_scope"


def test_paths_are_compared_percent_decoded() -> None:
    rules = compile_rules(["GET /v1/validate", "GET /a%20b"], [])
    assert refusal(rules, "GET", "/v1/%76alidate", None) is None
    assert refusal(rules, "GET", "/v1/%76alidated", None) == "insufficient_scope"
    assert refusal(rules, "GET", "/a b/c", None) is None
    assert refusal(rules, "GET", "/a%20b", None) is None


def test_addresses_ipv4_ipv6_and_mapped() -> None:
    rules = compile_rules([], ["203.0.113.0/24", "2001:db8::/48", "198.51.100.7"])
    allowed = ["203.0.113.0", "203.0.113.255", "198.51.100.7", "2001:db8::1", "2001:db8:0:ffff::1"]
    refused = ["203.0.114.1", "198.51.100.8", "2001:db8:1::1", "::1", "::ffff:203.0.114.1"]
    for address in [*allowed, "::ffff:203.0.113.9"]:
        assert refusal(rules, "GET", "/", address) is None, address
    for address in [*refused, "not-an-address", None]:
        assert refusal(rules, "GET", "/", address) == "ip_not_allowed", address


def test_the_address_is_checked_before_the_scope() -> None:
    rules = compile_rules(["GET /v1"], ["203.0.113.0/24"])
    assert refusal(rules, "POST", "/other", "192.0.2.1") == "ip_not_allowed"
    assert refusal(rules, "POST", "/other", "203.0.113.1") == "insufficient_scope"
    assert refusal(rules, "GET", "/v1/x", "203.0.113.1") is None


def test_remembered_answers_stay_right_past_the_memo_size() -> None:
    rules = compile_rules(["GET /keep"], ["10.0.0.0/8"])
    for n in range(MEMO_MAX * 2 + 3):
        assert refusal(rules, "GET", f"/keep/{n}", f"10.0.{n // 256 % 256}.{n % 256}") is None
        assert refusal(rules, "GET", f"/drop/{n}", "10.0.0.1") == "insufficient_scope"
        assert refusal(rules, "GET", "/keep", f"11.0.0.{n % 256}") == "ip_not_allowed"


def test_unreadable_stored_rules_refuse_everything() -> None:
    rules = compile_rules(["GET no-slash"], [])
    assert refusal(rules, "GET", "/", "127.0.0.1") == "ip_not_allowed"


# ---------------------------------------------------------------- client addresses


def resolve(trusted: str, peer: str | None, *xff: str) -> Client:
    networks = [parse_network(n) for n in trusted.split(",") if n]
    headers = CIMultiDict(("X-Forwarded-For", value) for value in xff)
    return ClientAddresses(networks).resolve(peer, headers)


def test_without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says() -> None:
    assert resolve("", "192.0.2.1", "203.0.113.9") == Client("192.0.2.1", "192.0.2.1")
    assert resolve("", None, "203.0.113.9") == Client(None, None)


def test_an_untrusted_peer_cannot_forward_for_anyone() -> None:
    assert resolve("10.0.0.0/8", "192.0.2.1", "203.0.113.9") == Client("192.0.2.1", "192.0.2.1")


@pytest.mark.parametrize(
    ("xff", "client", "upstream"),
    [
        # one load balancer
        (["203.0.113.9"], "203.0.113.9", "203.0.113.9, 10.0.0.1"),
        # three proxies in a row, all trusted
        (
            ["203.0.113.9, 10.1.1.1, 10.2.2.2"],
            "203.0.113.9",
            "203.0.113.9, 10.1.1.1, 10.2.2.2, 10.0.0.1",
        ),
        # the same chain split over several header lines
        (
            ["203.0.113.9", "10.1.1.1,10.2.2.2"],
            "203.0.113.9",
            "203.0.113.9, 10.1.1.1, 10.2.2.2, 10.0.0.1",
        ),
        # the client's own forged entries left of it are dropped
        (
            ["6.6.6.6, 7.7.7.7, 203.0.113.9, 10.1.1.1"],
            "203.0.113.9",
            "203.0.113.9, 10.1.1.1, 10.0.0.1",
        ),
        # only proxies: the left-most is as far as anyone can tell
        (["10.1.1.1, 10.2.2.2"], "10.1.1.1", "10.1.1.1, 10.2.2.2, 10.0.0.1"),
        # no header: the trusted peer itself (a health check)
        ([], "10.0.0.1", "10.0.0.1"),
        # garbage stops the walk at the last trusted hop
        (["203.0.113.9, unknown, 10.1.1.1"], "10.1.1.1", "10.1.1.1, 10.0.0.1"),
        # ports and IPv6, as some balancers write them
        (
            ["[2001:db8::5]:4711, 10.1.1.1:80"],
            "2001:db8::5",
            "[2001:db8::5]:4711, 10.1.1.1:80, 10.0.0.1",
        ),
        ([" , 203.0.113.9 ,"], "203.0.113.9", "203.0.113.9, 10.0.0.1"),
    ],
)
def test_the_right_most_untrusted_address_is_the_client(
    xff: list[str], client: str, upstream: str
) -> None:
    assert resolve("10.0.0.0/8", "10.0.0.1", *xff) == Client(client, upstream)


def test_trusted_proxies_over_ipv6_and_mapped_peers() -> None:
    assert resolve("2001:db8:ffff::/48", "2001:db8:ffff::1", "198.51.100.2").address == (
        "198.51.100.2"
    )
    assert resolve("10.0.0.0/8", "::ffff:10.0.0.1", "198.51.100.2") == Client(
        "198.51.100.2", "198.51.100.2, ::ffff:10.0.0.1"
    )
    assert resolve("10.0.0.0/8", "unix-socket", "198.51.100.2").address == "unix-socket"
