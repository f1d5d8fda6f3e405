"""Leak reports (SPEC §13): tokens found in public are revoked at once, on every gateway.

Whoever found a token may report it, with no credential, so a report must neither reveal
which tokens exist nor let anyone revoke a token whose secret they do not have:

* strings whose checksum is wrong are dropped before any database or hash work;
* every other one costs the same: one lookup for all of them, then one argon2 verify each
  (against a stand-in hash when its id is unknown), then one transaction that revokes the
  genuine ones (DELETE + NOTIFY, audited as ``token.leaked``, the ``token.leaked`` webhook),
  run whether there are any or not;
* the answer is the same whatever they were, and reports are limited per client address.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Final, Literal

from cachetools import TTLCache

from gateway.core.errors import TooManyRequests
from gateway.core.gcra import US, Tat, gcra
from gateway.core.journal import Actor
from gateway.core.rates import Rate
from gateway.core.store_webhooks import WebhookStore
from gateway.core.tokens import Hasher, Token, parse

from .metrics import AdminMetrics

REPORT_MAX: Final = 100
# argon2 runs of leak reports at once: floods of reports use at most this many cores.
VERIFY_CONCURRENCY: Final = 2
# Client addresses remembered by the limiter (each only while it still has a debt).
ADDRESSES_MAX: Final = 100_000

Verdict = Literal["revoked", "unknown", "bad_checksum"]


class AddressLimiter:
    """``LEAK_REPORT_RATE`` per client address: GCRA, one timestamp per address.

    An address is forgotten one period after its last report, when its timestamp is in
    the past anyway (it carries no debt), and at most ``maxsize`` are kept.
    """

    def __init__(
        self,
        rate: Rate,
        *,
        clock: Callable[[], float] = time.monotonic,
        maxsize: int = ADDRESSES_MAX,
    ) -> None:
        self._rate = rate
        self._clock = clock
        self._tats: TTLCache[str, Tat] = TTLCache(maxsize, ttl=rate.period, timer=clock)

    def admit(self, address: str) -> None:
        """Count one report from ``address``; 429 with ``Retry-After`` beyond the rate."""
        decision, tat = gcra(self._tats.get(address), round(self._clock() * US), self._rate)
        self._tats[address] = tat
        if not decision.allowed:
            raise TooManyRequests(
                "too many leak reports from this address; retry later",
                headers={"Retry-After": str(decision.retry_after)},
            )


class LeakReports:
    def __init__(
        self, webhooks: WebhookStore, hasher: Hasher, prefix: str, metrics: AdminMetrics
    ) -> None:
        self._webhooks = webhooks
        self._hasher = hasher
        self._prefix = prefix
        self._metrics = metrics
        self._verifying = asyncio.Semaphore(VERIFY_CONCURRENCY)
        self._stand_in: str | None = None

    async def report(
        self, found: Sequence[tuple[str, str | None]], *, actor: Actor
    ) -> list[Verdict]:
        """Revoke the genuine tokens among ``found`` ((string, where it was found) pairs);
        the verdict of each, in order. ``actor`` is named after each token's source."""
        parsed = [parse(raw, self._prefix) for raw, _ in found]
        genuine: set[str] = set()
        candidates = {str(token): token for token in parsed if token is not None}
        if candidates:
            genuine = await self._genuine(list(candidates.values()))
            sources = {
                token.id: source for token, (_, source) in zip(parsed, found, strict=True) if token
            }
            leaked = [(token_id, sources[token_id]) for token_id in sorted(genuine)]
            genuine = set(await self._webhooks.revoke_leaked(leaked, actor=actor))
        verdicts: list[Verdict] = [
            "bad_checksum" if token is None else "revoked" if token.id in genuine else "unknown"
            for token in parsed
        ]
        for verdict in verdicts:
            self._metrics.leak_reports.labels(verdict).inc()
        return verdicts

    async def _genuine(self, tokens: list[Token]) -> set[str]:
        """The ids of the tokens whose secret matches their stored hash."""
        hashes = await self._webhooks.secret_hashes(sorted({token.id for token in tokens}))
        stand_in = await self._stand_in_hash()
        checks = [self._verify(hashes.get(token.id, stand_in), token.secret) for token in tokens]
        results = await asyncio.gather(*checks)
        return {t.id for t, ok in zip(tokens, results, strict=True) if ok and t.id in hashes}

    async def _verify(self, secret_hash: str, secret: str) -> bool:
        async with self._verifying:
            return await asyncio.to_thread(self._hasher.verify, secret_hash, secret)

    async def _stand_in_hash(self) -> str:
        """A hash no secret matches, made like real ones: an unknown id costs a real verify."""
        if self._stand_in is None:
            self._stand_in = await asyncio.to_thread(self._hasher.hash, secrets.token_hex(32))
        return self._stand_in
