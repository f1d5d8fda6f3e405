"""W3C trace context (SPEC §14): a valid ``traceparent`` passes upstream unchanged with its
``tracestate``, an absent or invalid one is replaced by a new one, and the trace id is in
the access-log line."""

from __future__ import annotations

import dataclasses
import io
import json
from typing import Any

import pytest
from multidict import CIMultiDict

from gateway.core.config import Settings
from gateway.proxy import tracecontext
from gateway.proxy.accesslog import AccessLog
from tests.conftest import IssueToken, StartGateway
from tests.helpers import Issued, bearer
from tests.proxy.test_forward import headers_of

# The specification's own example (§3.2.2.6).
VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
STATE = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"

INVALID = [
    "",
    VALID[:-1],  # too short
    VALID + "-extra",  # version 00 has nothing after its flags
    VALID.upper(),  # hex is lowercase
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent id
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff is forbidden
    "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # not hex
    "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
    "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # separators
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba-02b7-01",
    "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",  # later version: "-" next
]


@pytest.mark.parametrize("value", INVALID)
def test_invalid_traceparents_are_refused(value: str) -> None:
    assert not tracecontext.is_valid(value)


@pytest.mark.parametrize(
    "value",
    [
        VALID,
        VALID[:-2] + "00",  # not sampled
        VALID[:-2] + "ff",  # flags this version does not define are kept, not judged
        "01" + VALID[2:],  # a later version...
        "cc" + VALID[2:] + "-what-it-adds",  # ...may carry more after a dash
    ],
)
def test_valid_traceparents_are_accepted(value: str) -> None:
    assert tracecontext.is_valid(value)


def test_new_traceparents_are_valid_random_and_sampled() -> None:
    made = {tracecontext.new() for _ in range(1000)}
    assert len(made) == 1000
    assert len({tracecontext.trace_id(value) for value in made}) == 1000
    for value in made:
        assert tracecontext.is_valid(value)
        assert value.startswith("00-") and value.endswith("-01")


@pytest.mark.parametrize("draw", [0, 1, 1 << 64])
def test_a_draw_of_zeros_still_makes_a_valid_traceparent(
    monkeypatch: pytest.MonkeyPatch, draw: int
) -> None:
    monkeypatch.setattr(tracecontext, "_bits", lambda bits: draw)
    assert tracecontext.is_valid(tracecontext.new())


def test_one_valid_traceparent_is_kept_and_several_are_not() -> None:
    assert tracecontext.of(CIMultiDict(traceparent=VALID)) == VALID
    twice = CIMultiDict([("traceparent", VALID), ("traceparent", VALID)])
    assert tracecontext.of(twice) != VALID
    assert tracecontext.of(CIMultiDict()) != tracecontext.of(CIMultiDict())


# ---------------------------------------------------------------- through the gateway


@pytest.fixture
async def token(issue_token: IssueToken) -> Issued:
    return await issue_token()


async def upstream_saw(client: Any, token: Issued, **headers: str) -> dict[str, list[str]]:
    response = await client.get("/x", headers=bearer(token.raw, **headers))
    assert response.status == 200
    return headers_of(await response.json())


async def test_a_valid_traceparent_and_its_tracestate_reach_the_upstream_unchanged(
    gateway_client: Any, token: Issued
) -> None:
    seen = await upstream_saw(gateway_client, token, traceparent=VALID, tracestate=STATE)
    assert seen["traceparent"] == [VALID]
    assert seen["tracestate"] == [STATE]


@pytest.mark.parametrize("given", [None, *INVALID[1:5]])
async def test_an_absent_or_invalid_traceparent_is_replaced_and_its_tracestate_dropped(
    gateway_client: Any, token: Issued, given: str | None
) -> None:
    headers = (
        {"tracestate": STATE} if given is None else {"traceparent": given, "tracestate": STATE}
    )
    seen = await upstream_saw(gateway_client, token, **headers)
    [sent] = seen["traceparent"]
    assert sent != given
    assert tracecontext.is_valid(sent) and sent.endswith("-01")
    assert "tracestate" not in seen


async def test_each_request_without_one_starts_its_own_trace(
    gateway_client: Any, token: Issued
) -> None:
    sent = {(await upstream_saw(gateway_client, token))["traceparent"][0] for _ in range(5)}
    assert len(sent) == 5


@pytest.mark.parametrize("log_format", ["json", "text"])
async def test_the_access_log_line_carries_the_trace_id(
    gateway_settings: Settings,
    start_gateway: StartGateway,
    token: Issued,
    log_format: Any,
) -> None:
    stream = io.StringIO()
    access_log = AccessLog(log_format, stream)
    settings = dataclasses.replace(gateway_settings, log_format=log_format)
    client = await start_gateway(settings, access_log=access_log)
    seen = await upstream_saw(client, token)
    created = tracecontext.trace_id(seen["traceparent"][0])
    await upstream_saw(client, token, traceparent=VALID)
    refused = await client.get("/x", headers={"traceparent": VALID})
    assert refused.status == 401
    access_log.flush()
    lines = stream.getvalue().splitlines()
    if log_format == "json":
        logged = [json.loads(line)["trace_id"] for line in lines]
    else:
        logged = [line.split()[-1] for line in lines]
    # A refused request is logged under the client's trace too.
    assert logged == [created, VALID[3:35], VALID[3:35]]
