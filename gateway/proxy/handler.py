"""The request path, top to bottom, in one handler for every method and path.

request id and trace context -> bearer -> ``auth.prove()`` -> path check -> the
token's scopes and allowed addresses (``rules.check()``) -> ``limiter.hit()`` (or, for
a project with a quota, ``quotas.admit()``: rate limit and quota together) ->
``forward()``; then metrics, the usage ledger and the access log in one ``finally``,
whatever happened. Each step returns a value or raises one of :mod:`gateway.core.errors`'
classes, whose ``outcome`` is what the metrics count.

One handler rather than a stack of middlewares: each middleware layer costs a
coroutine and a closure per request, and a cached request must cost little more
than the upstream call itself. Requests the connection refuses before they reach
the handler (unparsable, too slow, over the connection cap) are counted and logged
by :meth:`Handler.rejected`, with the same fields.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from gateway.core.errors import (
    ClientClosed,
    QuotaExceeded,
    TollgateError,
    TooManyRequests,
    error_body,
)
from gateway.core.rates import Rate
from gateway.core.requestids import RequestIds

from . import tracecontext
from .accesslog import AccessLog
from .auth import Authenticator
from .bearer import bearer_token
from .clientaddr import ClientAddresses
from .forward import Forwarder
from .front import Request
from .front.response import http_date
from .lastused import LastUsed
from .metrics import GatewayMetrics
from .quota import Granted, Quotas
from .ratelimit import Decision, LocalLimiter, RateLimiter

log = logging.getLogger(__name__)

_TOO_MANY_BODY = error_body(TooManyRequests.code, TooManyRequests.message)
_QUOTA_BODY = error_body(QuotaExceeded.code, QuotaExceeded.message)
_CLIENT_GONE = 499  # logged when no answer could be sent (nginx's "client closed request")


def refuse(request: Request, err: TollgateError, request_id: str) -> None:
    """Answer ``err`` as JSON (bodies are encoded once per case, not per request); an
    answer already started can only be cut, and a client that left gets nothing."""
    if request.status is not None:
        request.cut()
        return
    if isinstance(err, ClientClosed):
        return
    headers = {
        **err.headers,
        "Content-Type": "application/json",
        "X-Request-Id": request_id,
        "Date": http_date(),
    }
    request.respond(err.status, headers, err.body())


def too_many(
    request: Request, decision: Decision, request_id: str, granted: Granted | None = None
) -> None:
    """The 429 answer, without raising, matching and copying an exception: a flood of
    over-limit requests is the case where refusals must stay cheap."""
    headers = decision.headers()
    if granted is not None:
        headers.update(granted.headers())
    headers["Content-Type"] = "application/json"
    headers["X-Request-Id"] = request_id
    headers["Date"] = http_date()
    request.respond(429, headers, _TOO_MANY_BODY)


def quota_used_up(request: Request, granted: Granted, request_id: str) -> None:
    """429 ``quota_exceeded``: ``Retry-After`` is the time until the period resets.

    Its ``RateLimit-*`` fields describe the policy that refused, the quota (as the IETF
    draft has it: the policy closest to exhaustion), so a client that reads only those
    waits for the period's reset instead of retrying into the same refusal."""
    reset = str(granted.reset)
    headers = granted.headers()
    headers["RateLimit-Limit"] = str(granted.limit)
    headers["RateLimit-Remaining"] = "0"
    headers["RateLimit-Reset"] = reset
    headers["Retry-After"] = reset
    headers["Content-Type"] = "application/json"
    headers["X-Request-Id"] = request_id
    headers["Date"] = http_date()
    request.respond(429, headers, _QUOTA_BODY)


class Handler:
    def __init__(
        self,
        *,
        auth: Authenticator,
        forwarder: Forwarder,
        limiter: RateLimiter,
        last_used: LastUsed,
        metrics: GatewayMetrics,
        access_log: AccessLog,
        clients: ClientAddresses | None = None,
        quotas: Quotas | None = None,
    ) -> None:
        self._auth = auth
        self._clients = clients or ClientAddresses(())
        self._forwarder = forwarder
        self._limiter = limiter
        self._last_used = last_used
        self._ledger = last_used.ledger
        self._quotas = quotas or Quotas(limiter, last_used.ledger)
        self._count = metrics.outcome_count
        self._duration = metrics.outcome_duration
        self._upstream_duration = metrics.upstream_duration
        self._access_log = access_log
        # The local limiter decides synchronously: no coroutine per request.
        self._hit_now: Callable[[str, Rate], Decision] | None = (
            limiter.hit_now if isinstance(limiter, LocalLimiter) else None
        )
        self._ids = RequestIds()

    def request_id(self, request: Request) -> str:
        return self._ids.of(request.headers.get("X-Request-Id"))

    def new_request_id(self) -> str:
        return self._ids.new()

    async def __call__(self, request: Request) -> None:
        request_id = self.request_id(request)
        traceparent = tracecontext.of(request.headers)
        state = None
        upstream_seconds: float | None = None
        outcome = TollgateError.outcome  # if even the finally below is reached by cancellation
        try:
            state = await self._auth.prove(bearer_token(request.headers))
            self._last_used.record(state.token_id)
            url = self._forwarder.target(request)
            client = self._clients.resolve(request.peer, request.headers)
            rules = state.rules
            if rules is not None:  # before the limit: a refused request uses none of it
                rules.check(request.method, request.path, client.address)
            granted: Granted | None = None
            hit_now = self._hit_now
            if state.quota is not None:
                decision, granted = await self._quotas.admit(state, state.quota)
            elif hit_now is not None:
                decision = hit_now(state.token_id, state.rate)
            else:
                decision = await self._limiter.hit(state.token_id, state.rate)
            if decision is None:
                assert granted is not None
                outcome = "quota_exceeded"
                quota_used_up(request, granted, request_id)
            elif decision.allowed:
                extra = decision.headers()
                if granted is not None:
                    extra.update(granted.headers())
                extra["X-Request-Id"] = request_id
                if state.notice is not None:
                    extra.update(state.notice)
                identity = {
                    "X-Project-Id": state.project_id,
                    "X-Token-Id": state.token_id,
                    "X-Request-Id": request_id,
                    "traceparent": traceparent,
                }
                if client.forwarded_for is not None:
                    identity["X-Forwarded-For"] = client.forwarded_for
                upstream_seconds, outcome = await self._forwarder.forward(
                    request, url, identity, extra
                )
                self._upstream_duration.observe(upstream_seconds)
            else:
                outcome = "rate_limited"
                too_many(request, decision, request_id, granted)
        except TollgateError as err:
            outcome = err.outcome
            refuse(request, err, request_id)
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            outcome = TollgateError.outcome
            refuse(request, TollgateError(), request_id)
        finally:
            status = request.status
            if status is None:  # the connection was gone before any answer could go out
                status, outcome = _CLIENT_GONE, "client_closed"
            if state is not None:
                self._ledger.count(
                    state.token_id, state.project_id, status, upstream_seconds is not None
                )
            self._record(
                request_id,
                tracecontext.trace_id(traceparent),
                request.method,
                request.path,
                status,
                outcome,
                request.started,
                upstream_seconds,
                None if state is None else state.token_id,
                None if state is None else state.project_id,
            )

    def rejected(self, err: TollgateError, method: str, path: str, started: float) -> str:
        """Count and log a request the connection refused itself; the id to answer with."""
        request_id = self.new_request_id()
        status = _CLIENT_GONE if err.outcome == "client_closed" else err.status
        self._record(request_id, None, method, path, status, err.outcome, started, None, None, None)
        return request_id

    def _record(
        self,
        request_id: str,
        trace_id: str | None,
        method: str,
        path: str,
        status: int,
        outcome: str,
        started: float,
        upstream_seconds: float | None,
        token_id: str | None,
        project_id: str | None,
    ) -> None:
        duration = time.perf_counter() - started
        self._count[outcome].inc()
        self._duration[outcome].observe(duration)
        self._access_log.log(
            request_id,
            trace_id,
            method,
            path,
            status,
            outcome,
            duration,
            upstream_seconds,
            token_id,
            project_id,
        )
