"""The admin API's request metrics, on the app's own registry (never the global one).

``route`` is the route template (``/v1/projects/{project_id}``), never an id, so the
number of series stays small and no identifier leaks into a label.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED: Final = "unmatched"
# 499: the client went away before the answer (nginx's convention).
CLIENT_GONE: Final = 499

DELIVERY_RESULTS: Final = ("delivered", "retried", "failed")
LEAK_RESULTS: Final = ("revoked", "unknown", "bad_checksum")

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class AdminMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "admin_requests",
            "Admin API requests by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "admin_request_duration_seconds",
            "Time to answer an admin API request, by method and route template.",
            ["method", "route"],
            buckets=_LATENCY,
            registry=registry,
        )
        self.webhook_deliveries = Counter(
            "admin_webhook_deliveries",
            "Webhook delivery attempts by result: delivered, retried (failed, tried again "
            "later) or failed (given up after 24 h).",
            ["result"],
            registry=registry,
        )
        self.outbox_pending = Gauge(
            "admin_webhook_outbox_pending",
            "Webhook deliveries waiting to be sent or tried again (read at each scrape).",
            registry=registry,
        )
        self.tokens_expiring = Gauge(
            "admin_tokens_expiring",
            "Tokens still working that end within `within` (read at each scrape; rotated "
            "tokens in their grace included).",
            ["within"],
            registry=registry,
        )
        self.leak_reports = Counter(
            "admin_leak_reports",
            "Reported leaked tokens by result: revoked, unknown, bad_checksum.",
            ["result"],
            registry=registry,
        )
        for result in DELIVERY_RESULTS:
            self.webhook_deliveries.labels(result)
        for result in LEAK_RESULTS:
            self.leak_reports.labels(result)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "OTHER"
        self.requests.labels(method, route, str(status)).inc()
        self.duration.labels(method, route).observe(seconds)


def route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return UNMATCHED if resource is None else resource.canonical


def metrics_middleware(metrics: AdminMetrics) -> Middleware:
    """Outermost middleware, so it sees the final status of every answer."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = CLIENT_GONE
            raise
        finally:
            metrics.observe(
                request.method, route_label(request), status, time.perf_counter() - start
            )

    return middleware


def exposition(metrics: AdminMetrics) -> web.Response:
    response = web.Response(body=generate_latest(metrics.registry))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
