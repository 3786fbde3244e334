"""Per-issuer request rate limit (``settings.rate_limit_per_minute``), shared across replicas.

A fixed one-minute window counted in Redis (``INCR`` + ``EXPIRE``), so every API replica sees the
same count; while Redis is unreachable each replica counts on its own (the limit then applies per
replica, which is still a limit). Answered with 429 and ``Retry-After`` by the authenticator.
"""

from __future__ import annotations

import hashlib
import threading
import time

import redis

KEY_PREFIX = "rls:rate:"
RETRY_AFTER_FAILURE = 5.0


class RateLimiter:
    def __init__(self, client: redis.Redis | None, per_minute: int):
        self.client = client
        self.per_minute = per_minute
        self._local: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()
        self._skip_redis_until = 0.0

    def retry_after(self, issuer: str) -> int | None:
        """Count one request; None when allowed, else seconds until the window resets."""
        if self.per_minute <= 0:
            return None
        now = time.time()
        window = int(now // 60)
        count = self._redis_count(issuer, window)
        if count is None:
            count = self._local_count(issuer, window)
        return None if count <= self.per_minute else max(1, int(60 - now % 60))

    def _redis_count(self, issuer: str, window: int) -> int | None:
        if self.client is None or time.monotonic() < self._skip_redis_until:
            return None
        key = f"{KEY_PREFIX}{hashlib.sha256(issuer.encode()).hexdigest()[:24]}:{window}"
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, 120)
            count, _ = pipe.execute()
            return int(count)
        except redis.RedisError:
            self._skip_redis_until = time.monotonic() + RETRY_AFTER_FAILURE
            return None

    def _local_count(self, issuer: str, window: int) -> int:
        with self._lock:
            for key in [k for k in self._local if k[1] < window]:
                del self._local[key]
            count = self._local.get((issuer, window), 0) + 1
            self._local[(issuer, window)] = count
            return count
