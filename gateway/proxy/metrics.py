"""Prometheus metrics of the gateway (SPEC §6).

Metrics live on a registry passed in (one per app), never the global default one,
so tests can build many apps. Updates stay in memory; with several worker processes
each worker writes snapshots of its registry that the parent sums
(:mod:`gateway.runtime.health`). No label ever carries a token, token id or project id.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OUTCOMES = (
    "proxied",
    "unauthenticated",
    "invalid_request",
    "invalid_token",
    "expired_token",
    "forbidden",  # a proven token out of its scopes or allowed addresses (403)
    "rate_limited",
    "quota_exceeded",
    "upstream_error",
    "upstream_timeout",
    "unavailable",
    "client_closed",  # the client left before its answer (logged as status 499)
    "client_timeout",  # its head, body or reading of the answer was too slow (408, or cut)
)

# Latency buckets from 0.5 ms: a cached request through the gateway takes about a millisecond.
_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "gateway_requests", "Requests by outcome.", ["outcome"], registry=registry
        )
        self.request_duration = Histogram(
            "gateway_request_duration_seconds",
            "Time from request to the last byte of the answer, by outcome.",
            ["outcome"],
            buckets=_LATENCY,
            registry=registry,
        )
        self.upstream_duration = Histogram(
            "gateway_upstream_duration_seconds",
            "Time until the upstream's response headers arrived.",
            buckets=_LATENCY,
            registry=registry,
        )
        self.token_cache = Counter(
            "gateway_token_cache", "Token cache lookups by result.", ["result"], registry=registry
        )
        self.verifications = Counter(
            "gateway_token_verifications",
            "argon2 verifications run, by result.",
            ["result"],
            registry=registry,
        )
        self.revocations = Counter(
            "gateway_revocations_received",
            "Revocation and change notifications received from Postgres.",
            registry=registry,
        )
        self.revocation_propagation = Histogram(
            "gateway_revocation_propagation_seconds",
            "Time from the admin's commit to eviction in this process.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
            registry=registry,
        )
        self.last_used_pending = Gauge(
            "gateway_last_used_pending",
            "Last-used times waiting to be written.",
            registry=registry,
        )
        self.last_used_flushes = Counter(
            "gateway_last_used_flushes",
            "Batched last-used writes, by result.",
            ["result"],
            registry=registry,
        )
        self.usage_flushes = Counter(
            "gateway_usage_flushes",
            "Usage ledger writes (in the last-used flush's transaction), by result.",
            ["result"],
            registry=registry,
        )
        self.rate_limit_fallbacks = Counter(
            "gateway_rate_limit_fallbacks",
            "Requests limited locally because the shared (Redis) backend was unreachable.",
            registry=registry,
        )
        # Children bound once: ``labels()`` on the hot path costs a dict lookup and a lock.
        self.outcome_count = {name: self.requests.labels(name) for name in OUTCOMES}
        self.outcome_duration = {name: self.request_duration.labels(name) for name in OUTCOMES}
        for result in ("hit", "miss", "negative"):
            self.token_cache.labels(result)
        for result in ("valid", "invalid"):
            self.verifications.labels(result)
        for result in ("ok", "error"):
            self.last_used_flushes.labels(result)
            self.usage_flushes.labels(result)
