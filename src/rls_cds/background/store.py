"""The one Redis store: assessments per (tenant, patient), trigger coalescing, locks, dead letters.

Every key is namespaced by tenant (``rls:t:<tenant>:...``) and names a patient only by the same
digest the feedback store uses (``api.suppression.patient_key``), so neither keys nor logs
carry patient identifiers. Clients have short socket timeouts: a Redis in trouble costs a caller
milliseconds, and callers decide what to do without the store (hooks evaluate live).

Concurrent writers never lose updates: a per-patient lock serialises re-evaluations, and the write
itself is a compare-and-set (WATCH/MULTI) that refuses to replace an assessment built from data read
later than the one being written.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from rls_cds.api.suppression import patient_key

PREFIX = "rls"
SOCKET_TIMEOUT = 2.0  # background work tolerates a little more than hooks (0.25 s) but never hangs
_TENANT_OK = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
_ACQUIRE = (
    "if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end "
    "if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('pexpire', KEYS[1], ARGV[2]) return 1 end "
    "return 0"
)
_DEAD_LETTER_KEEP = 10_000


def embedded_url_file(settings) -> Path:
    """Where the embedded Redis server writes its URL (read by other processes of the same install)."""
    return Path(settings.embedded_redis_dir) / "redis.url"


def redis_url(settings=None) -> str | None:
    """settings.redis_url, else the URL of a running embedded server, else None."""
    if settings is None:
        from rls_cds.settings import get_settings

        settings = get_settings()
    if settings.redis_url:
        return settings.redis_url
    path = embedded_url_file(settings)
    return path.read_text().strip() if path.exists() else None


def get_redis(settings=None, socket_timeout: float = SOCKET_TIMEOUT, retries: int = 0) -> redis.Redis:
    """A client with short timeouts. ``retries`` = 0 by default: redis-py's own default retries a
    refused connection for about 3 s, far beyond a hook's budget (callers decide what to do instead)."""
    url = redis_url(settings)
    if not url:
        raise redis.ConnectionError("no REDIS_URL and no embedded Redis server running")
    return redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries),
    )


def tenant_ns(tenant: str) -> str:
    """Tenants become key segments: keep readable ids, digest anything else (no ':' injection)."""
    if _TENANT_OK.match(tenant or ""):
        return tenant
    return "h" + hashlib.sha256((tenant or "").encode()).hexdigest()[:24]


# Causes whose findings are about a drug: another drug is another finding.
_PER_DRUG = frozenset({"drug_induced", "drug_withdrawal", "augmentation"})


def finding_identity(finding: dict) -> str:
    """What makes 'the same finding' across two assessments: the cause; for drug causes also which drug
    (a second SSRI is a new finding, a new ferritin value for an existing iron finding is not)."""
    cause = str(finding.get("cause"))
    if cause in _PER_DRUG:
        codes = sorted(
            f"{e.get('system')}|{e.get('code')}" for e in finding.get("evidence") or () if isinstance(e, dict)
        )
        return cause + "|" + ",".join(codes)
    return cause


def diff_findings(previous: list[dict] | None, current: list[dict]) -> dict[str, list[str]]:
    before = {finding_identity(f) for f in previous or ()}
    after = {finding_identity(f) for f in current}
    return {
        "new": sorted(after - before),
        "resolved": sorted(before - after),
        "unchanged": sorted(after & before),
    }


def _norm(url) -> str:
    return str(url or "").strip().rstrip("/").lower()


def _describe_age(seconds: float) -> str:
    if seconds < 90:
        return f"{int(seconds)} seconds"
    if seconds < 5400:
        return f"{round(seconds / 60)} minutes"
    return f"{seconds / 3600:.1f} hours"


def _now_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class Store:
    """Redis-backed store; ``.redis`` is the client (also used for the JWT jti replay cache)."""

    def __init__(self, client: redis.Redis, assessment_ttl_seconds: int = 90 * 86400):
        self.redis = client
        self.ttl = int(assessment_ttl_seconds)

    @classmethod
    def from_settings(cls, settings, socket_timeout: float = 0.25, retries: int = 0) -> Store:
        """Defaults suit the API (a hook must not wait on Redis); workers pass longer/more."""
        return cls(get_redis(settings, socket_timeout, retries), settings.assessment_ttl_days * 86400)

    # --- keys ------------------------------------------------------------------------------
    def key(self, tenant: str, kind: str, patient_id: str | None = None) -> str:
        base = f"{PREFIX}:t:{tenant_ns(tenant)}:{kind}"
        return f"{base}:{patient_key(tenant, patient_id)}" if patient_id is not None else base

    def ping(self) -> bool:
        try:
            return bool(self.redis.ping())
        except redis.RedisError:
            return False

    # --- assessments -----------------------------------------------------------------------
    def get_assessment(self, tenant: str, patient_id: str) -> dict | None:
        raw = self.redis.get(self.key(tenant, "asmt", patient_id))
        return orjson.loads(raw) if raw else None

    def save_assessment(self, tenant: str, patient_id: str, record: dict) -> dict:
        """Compare-and-set the latest assessment; returns what is stored afterwards.

        ``record`` needs ``findings``, ``fingerprint``, ``table_version`` and ``read_at`` (epoch seconds
        at which its input was read). The stored record gains ``changes`` (new/resolved/unchanged since
        the previous assessment), ``revision`` and ``computed_at``. Outcome in ``record['outcome']``:
        'stored', 'unchanged' (same input and tables: only freshness refreshed, the previous diff kept)
        or 'stale' (a stored assessment was built from data read later: nothing written).
        """
        key = self.key(tenant, "asmt", patient_id)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    prev = orjson.loads(raw) if raw else None
                    out = self._merge(prev, record)
                    if out["outcome"] == "stale":
                        pipe.unwatch()
                        return out
                    pipe.multi()
                    pipe.set(key, orjson.dumps(out), ex=self.ttl)
                    pipe.execute()
                    return out
                except redis.WatchError:
                    continue  # another writer got in between: re-read and decide again

    @staticmethod
    def _merge(prev: dict | None, record: dict) -> dict:
        now = time.time()
        if prev and prev.get("read_at", 0) > record["read_at"]:
            return {**prev, "outcome": "stale"}
        same = (
            prev is not None
            and prev.get("fingerprint") == record["fingerprint"]
            and prev.get("table_version") == record["table_version"]
            and prev.get("code_version") == record.get("code_version")  # new code: new findings
        )
        if same:
            return {
                **prev,
                "read_at": record["read_at"],
                "computed_at": _now_iso(now),
                "computed_at_epoch": now,
                "cards": record.get("cards", prev.get("cards")),
                "reason": record.get("reason", prev.get("reason")),  # why it was last recomputed
                "outcome": "unchanged",
            }
        return {
            **record,
            "changes": diff_findings(prev and prev.get("findings"), record["findings"]),
            "previous_computed_at": prev and prev.get("computed_at"),
            "revision": (prev or {}).get("revision", 0) + 1,
            "computed_at": _now_iso(now),
            "computed_at_epoch": now,
            "outcome": "stored",
        }

    def assessment_age(self, record: dict) -> float:
        return max(0.0, time.time() - float(record.get("computed_at_epoch", 0)))

    def fresh_cards(
        self,
        tenant: str,
        patient_id: str,
        fhir_server: str | None,
        max_age_seconds: float,
        table_version: str | None,
        code: str | None = None,
    ) -> list[dict] | None:
        """patient-view cards of a stored assessment no older than ``max_age_seconds``, built from the
        same FHIR server, terminology tables and (given ``code``) code version (``code_version()``);
        each card's detail says so and how old it is.
        None when there is no such assessment (the caller evaluates live)."""
        raw, changed = self.redis.mget(
            self.key(tenant, "asmt", patient_id), self.key(tenant, "changed", patient_id)
        )
        record = orjson.loads(raw) if raw else None
        if record is None or not isinstance(record.get("cards"), list):
            return None
        if changed is not None and float(changed) >= float(record.get("read_at") or 0):
            return None  # a trigger said the data changed after this assessment read them
        age = self.assessment_age(record)
        if age > max_age_seconds or (table_version and record.get("table_version") != table_version):
            return None
        if code and record.get("code_version") != code:
            return None
        if fhir_server and _norm(record.get("fhir_server")) != _norm(fhir_server):
            return None
        note = (
            f"\n\n*Based on a stored assessment computed {_describe_age(age)} ago "
            f"(background re-evaluation at {record.get('computed_at')}), not on a live read of the record.*"
        )
        return [{**card, "detail": (card.get("detail") or "") + note} for card in record["cards"]]

    def mark_changed(self, tenant: str, patient_id: str) -> None:
        """A trigger says the patient's data changed (or may have): ``fresh_cards`` refuses assessments
        read before now, until a re-evaluation that read after it lands."""
        self.redis.set(self.key(tenant, "changed", patient_id), repr(self.now()), ex=self.ttl)

    def now(self) -> float:
        """Redis's clock (epoch seconds): the API marks changes and workers stamp their reads on
        different machines, so both use this one clock to be compared."""
        seconds, micros = self.redis.time()
        return seconds + micros / 1e6

    # --- per-patient lock --------------------------------------------------------------------
    @contextmanager
    def patient_lock(
        self, tenant: str, patient_id: str, ttl_seconds: float, owner: str | None = None
    ) -> Iterator[bool]:
        """Yields True when this caller holds the patient's lock (auto-expires after ``ttl_seconds``).

        ``owner`` (the task id) lets a redelivered task take over the lock its killed first delivery
        left behind, instead of waiting for it to expire."""
        key = self.key(tenant, "lock", patient_id)
        token = owner or secrets.token_hex(16)
        held = bool(self.redis.eval(_ACQUIRE, 1, key, token, int(ttl_seconds * 1000)))
        try:
            yield held
        finally:
            if held:
                with contextlib.suppress(redis.RedisError):  # else it expires by itself
                    self.redis.eval(_RELEASE, 1, key, token)

    # --- trigger coalescing --------------------------------------------------------------------
    def claim_trigger(self, tenant: str, patient_id: str, window_seconds: int) -> bool:
        """True when no re-evaluation of this patient is queued (and not yet started) in the window."""
        key = self.key(tenant, "pending", patient_id)
        return bool(self.redis.set(key, b"1", nx=True, ex=max(1, int(window_seconds))))

    def release_trigger(self, tenant: str, patient_id: str) -> None:
        """Called when a re-evaluation starts reading: later changes must queue a new one."""
        self.redis.delete(self.key(tenant, "pending", patient_id))

    def claim_once(self, tenant: str, name: str, window_seconds: int) -> bool:
        """SET NX for a notification id (or any string): True the first time within the window."""
        digest = hashlib.sha256(name.encode()).hexdigest()[:32]
        key = f"{self.key(tenant, 'seen')}:{digest}"
        return bool(self.redis.set(key, b"1", nx=True, ex=max(1, int(window_seconds))))

    def release_once(self, tenant: str, name: str) -> None:
        """Forget a ``claim_once`` (its work started or could not be queued): the next one counts."""
        digest = hashlib.sha256(name.encode()).hexdigest()[:32]
        self.redis.delete(f"{self.key(tenant, 'seen')}:{digest}")

    # --- dead letters and task statistics ------------------------------------------------------
    def dead_letter(self, tenant: str, entry: dict[str, Any]) -> None:
        key = self.key(tenant, "deadletter")
        pipe = self.redis.pipeline(transaction=False)
        pipe.lpush(key, orjson.dumps({**entry, "at": _now_iso(time.time())}))
        pipe.ltrim(key, 0, _DEAD_LETTER_KEEP - 1)
        pipe.execute()

    def dead_letters(self, tenant: str, limit: int = 100) -> list[dict]:
        """Newest first, as the operator API shows them: reasons and patient digests, no patient ids."""
        raw = self.redis.lrange(self.key(tenant, "deadletter"), 0, limit - 1)
        return [{k: v for k, v in orjson.loads(x).items() if k != "requeue"} for x in raw]

    def raw_dead_letters(self, tenant: str) -> list[bytes]:
        """Every dead letter of ``tenant`` as stored (with what re-queueing needs), newest first."""
        return self.redis.lrange(self.key(tenant, "deadletter"), 0, -1)

    def remove_dead_letter(self, tenant: str, raw: bytes) -> None:
        """Remove one entry read by ``raw_dead_letters`` (once its patient is queued again)."""
        self.redis.lrem(self.key(tenant, "deadletter"), 1, raw)

    def record_task(self, name: str, outcome: str, seconds: float) -> None:
        """Task outcome counters and summed durations (read by the API's /metrics)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hincrby(f"{PREFIX}:stats:tasks", f"{name}|{outcome}", 1)
        pipe.hincrbyfloat(f"{PREFIX}:stats:task_seconds", f"{name}|{outcome}", seconds)
        pipe.execute()

    def task_stats(self) -> tuple[dict[str, int], dict[str, float]]:
        counts = {k.decode(): int(v) for k, v in self.redis.hgetall(f"{PREFIX}:stats:tasks").items()}
        secs = {k.decode(): float(v) for k, v in self.redis.hgetall(f"{PREFIX}:stats:task_seconds").items()}
        return counts, secs

    def queue_depths(self, queues: tuple[str, ...] = ("hooks", "batch")) -> dict[str, int]:
        """Messages waiting in each Celery queue (the Redis broker keeps one list per queue)."""
        pipe = self.redis.pipeline(transaction=False)
        for q in queues:
            pipe.llen(q)
        return dict(zip(queues, (int(n) for n in pipe.execute()), strict=True))
