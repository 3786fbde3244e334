"""Issuer key sets fetched over HTTP: only from allowlisted URLs, cached, refreshed sparingly.

Callers pass only URLs the issuer configuration allows (its ``jwks_url`` or an ``allowed_jku``
entry); a URL from a token is never fetched unless it is on that list. Key sets are cached for
``ttl`` seconds; an unknown ``kid`` triggers at most one refresh per URL every
``min_refresh_interval`` seconds (so forged kids cannot make this service hammer an EHR), and when
a refresh fails the last good keys keep serving.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import orjson
import requests
import urllib3

from rls_cds.security.outbound import ForbiddenDestination, check_destination

log = logging.getLogger("rls_cds.security")

MAX_JWKS_BYTES = 256 * 1024


@dataclass
class _Entry:
    keys: list[dict] = field(default_factory=list)
    fetched_at: float = float("-inf")  # monotonic time of the last successful fetch
    attempted_at: float = float("-inf")  # monotonic time of the last attempt (success or not)
    kid_refresh_at: float = float("-inf")  # last refresh caused by an unknown kid
    lock: threading.Lock = field(default_factory=threading.Lock)


class JwksCache:
    def __init__(self, ttl: float = 900.0, min_refresh_interval: float = 30.0, timeout: float = 2.0):
        self.ttl = ttl
        self.min_refresh_interval = min_refresh_interval
        self.timeout = timeout
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self.fetches = 0  # successful or failed HTTP fetches (for metrics and tests)

    def _entry(self, url: str) -> _Entry:
        with self._lock:
            entry = self._entries.get(url)
            if entry is None:
                entry = self._entries[url] = _Entry()
            return entry

    def cached(self, url: str) -> list[dict]:
        """Keys held for ``url`` (possibly stale), without any network access."""
        entry = self._entries.get(url)
        return list(entry.keys) if entry else []

    def keys(self, url: str, want_kid: str | None = None) -> list[dict]:
        """Keys for ``url``: fetched when missing or stale, or (rate-limited) when ``want_kid`` is unknown."""
        entry = self._entry(url)
        with entry.lock:  # one fetch per URL at a time; others wait and reuse its result
            now = time.monotonic()
            # Stale (or never fetched): fetch, but after a failure wait before trying again.
            if now - entry.fetched_at >= self.ttl and now - entry.attempted_at >= self.min_refresh_interval:
                self._refresh(url, entry)
            elif (
                want_kid is not None
                and all(k.get("kid") != want_kid for k in entry.keys)
                and now - entry.kid_refresh_at >= self.min_refresh_interval
            ):
                entry.kid_refresh_at = now  # unknown kid (key rotation?): one refresh per interval
                self._refresh(url, entry)
            return list(entry.keys)

    def _refresh(self, url: str, entry: _Entry) -> None:
        entry.attempted_at = time.monotonic()
        self.fetches += 1
        try:
            entry.keys = self._fetch(url)
            entry.fetched_at = time.monotonic()
        # The body is read from the raw urllib3 stream (to cap its size), so a connection cut or a
        # timeout mid-body raises urllib3's own errors, which are not RequestExceptions.
        except (requests.RequestException, urllib3.exceptions.HTTPError, ValueError) as exc:
            # Keep the last good keys; the reason (no URL content, no keys) is for the operator.
            log.warning("JWKS fetch failed", extra={"jwks_url": url, "error_type": type(exc).__name__})

    def _fetch(self, url: str) -> list[dict]:
        check_destination(url)
        with requests.Session() as http:
            http.trust_env = False
            resp = http.get(
                url,
                timeout=self.timeout,
                allow_redirects=False,
                stream=True,
                headers={"Accept": "application/json"},
            )
            if resp.status_code != 200:
                raise ValueError(f"HTTP {resp.status_code}")
            body = resp.raw.read(MAX_JWKS_BYTES + 1, decode_content=True)
        if len(body) > MAX_JWKS_BYTES:
            raise ValueError("JWKS too large")
        doc = orjson.loads(body)
        keys = doc.get("keys") if isinstance(doc, dict) else None
        if not isinstance(keys, list):
            raise ValueError("no 'keys' array")
        return [k for k in keys if isinstance(k, dict) and k.get("kty") in ("RSA", "EC") and "d" not in k]


__all__ = ["ForbiddenDestination", "JwksCache"]
