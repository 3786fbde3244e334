"""JWT ``jti`` replay cache: each token id is accepted once, across every API replica.

Ids are stored in Redis with ``SET NX EX`` (atomic: of two replicas racing on one token, exactly one
wins) for ``ttl`` seconds, which the caller sets to at least the longest token lifetime accepted
plus clock skew, so an id is remembered for as long as its token could be valid. Keys hold a digest
of (issuer, jti), not the raw id.

Redis down must not stop the hooks (DESIGN: reliability), so every id is also remembered in a
bounded in-process cache, and while Redis is unreachable that cache alone decides (replays across
replicas are then only caught per replica; the operator log says so). After a Redis failure the
cache skips Redis for a few seconds instead of paying a timeout on every request.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict

import redis

log = logging.getLogger("rls_cds.security")

KEY_PREFIX = "rls:jti:"
REDIS_TIMEOUT = 0.25  # seconds; a slow Redis must not eat the hook's deadline
RETRY_AFTER_FAILURE = 5.0  # seconds without Redis after a failure


class ReplayCache:
    def __init__(self, client: redis.Redis | None, ttl_seconds: int, local_max: int = 200_000):
        self.client = client
        self.ttl = int(ttl_seconds)
        self.local_max = local_max
        self._local: OrderedDict[str, float] = OrderedDict()  # key -> expiry (monotonic)
        self._lock = threading.Lock()
        self._skip_redis_until = 0.0

    @classmethod
    def from_url(cls, url: str | None, ttl_seconds: int) -> ReplayCache:
        client = (
            redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT)
            if url
            else None
        )
        return cls(client, ttl_seconds)

    @staticmethod
    def key(issuer: str, jti: str) -> str:
        return KEY_PREFIX + hashlib.sha256(f"{issuer}\0{jti}".encode()).hexdigest()[:40]

    def seen_before(self, issuer: str, jti: str) -> bool:
        """Record (issuer, jti); True when it was already recorded (a replay)."""
        key = self.key(issuer, jti)
        if self._seen_locally(key):
            return True
        first = self._redis_set_nx(key)
        return first is False

    def _seen_locally(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            while self._local:  # expiry order == insertion order (one ttl for all)
                oldest, expiry = next(iter(self._local.items()))
                if expiry > now and len(self._local) < self.local_max:
                    break
                self._local.pop(oldest)
            if key in self._local:
                return True
            self._local[key] = now + self.ttl
            return False

    def _redis_set_nx(self, key: str) -> bool | None:
        """True: first use; False: seen before; None: Redis unavailable (local cache decided)."""
        if self.client is None or time.monotonic() < self._skip_redis_until:
            return None
        try:
            return bool(self.client.set(key, b"1", nx=True, ex=self.ttl))
        except redis.RedisError as exc:
            self._skip_redis_until = time.monotonic() + RETRY_AFTER_FAILURE
            log.warning(
                "jti replay cache: Redis unavailable, using this replica's memory only",
                extra={"error_type": type(exc).__name__},
            )
            return None
