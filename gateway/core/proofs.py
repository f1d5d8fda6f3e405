"""Proofs of credentials, kept per process: who was proven, and who was proven wrong.

Shared by the gateway (tokens) and the admin API (admin keys), so a credential is
proven against its argon2 hash at most once per process either way.

* :class:`ProofCache`: digest of a whole credential -> its id, filled only after argon2
  verified the secret. Credentials are immutable, so a proof holds as long as the row
  exists. A cachetools ``LRUCache`` beside a reverse map by id; the raw credential is
  never kept.
* :class:`NegativeCache`: digests known to be wrong, for a short time: a cachetools
  ``TTLCache`` with an injectable clock.

Neither is thread-safe (cachetools' caches are not either); they live on the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cachetools import LRUCache, TTLCache

Clock = Callable[[], float]


class ProofCache:
    """digest -> token id, least recently used first out.

    A token id has exactly one valid token, hence at most one proof: the reverse
    map lets a revocation drop it without scanning. The positive hit is keyed by
    the digest of the whole token, never by the token id alone.
    """

    def __init__(self, maxsize: int = 100_000) -> None:
        self._by_digest: LRUCache[bytes, str] = LRUCache(maxsize)
        self._by_id: dict[str, bytes] = {}

    def get(self, key: bytes) -> str | None:
        return self._by_digest.get(key)

    def add(self, key: bytes, token_id: str) -> None:
        self.evict(token_id)
        # Make room ourselves: an eviction the LRUCache made on its own would leave
        # the reverse map behind.
        if len(self._by_digest) >= self._by_digest.maxsize:
            _, oldest = self._by_digest.popitem()
            del self._by_id[oldest]
        self._by_digest[key] = token_id
        self._by_id[token_id] = key

    def evict(self, token_id: str) -> None:
        key = self._by_id.pop(token_id, None)
        if key is not None:
            del self._by_digest[key]

    def __len__(self) -> int:
        return len(self._by_digest)


class NegativeCache:
    """Digests of tokens known to be wrong, each remembered for ``ttl`` seconds.

    Expired digests leave as new ones arrive (amortised O(1)); when full, the oldest
    goes first.
    """

    def __init__(self, ttl: float, *, clock: Clock = time.monotonic, maxsize: int = 10_000):
        self.ttl = ttl
        self._wrong: TTLCache[bytes, bool] = TTLCache(maxsize, ttl, timer=clock)

    def __contains__(self, key: bytes) -> bool:
        return key in self._wrong

    def add(self, key: bytes) -> None:
        self._wrong[key] = True  # a second sighting starts the ttl again

    def __len__(self) -> int:
        return len(self._wrong)
