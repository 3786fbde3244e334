"""Card feedback and override suppression in Redis.

CDS Hooks feedback names only the card uuid, so when a hook answers, each card's uuid is remembered
with its patient and *trigger* (cause + summary, which names the drug or the value). An override then
suppresses that trigger for that patient: a new draft of the same drug (new order id, new uuid) stays
quiet, while a new lab value (new summary) is shown again.

Patient ids are stored only as digests of tenant and id: HMAC-SHA-256 under RLS_PATIENT_DIGEST_KEY when
it is set (production), plain SHA-256 otherwise (recomputable for a guessable id). Redis calls have short
timeouts; every failure is counted and reported to the caller, who answers without suppression.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass

import orjson
import redis

from rls_cds.api.metrics import Metrics

log = logging.getLogger("rls_cds.api")

# Card uuids are remembered this long; feedback on an older card is stored but suppresses nothing.
CARD_MEMORY_SECONDS = 7 * 24 * 3600


def _digest(*parts: str) -> str:
    message = "\x1f".join(parts).encode()
    key = _digest_key()
    if key is not None:
        return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]
    return hashlib.sha256(message).hexdigest()[:32]


def _digest_key() -> bytes | None:
    from rls_cds.settings import get_settings

    secret = get_settings().patient_digest_key
    return secret.get_secret_value().encode() if secret and secret.get_secret_value() else None


def patient_key(tenant: str, patient_id: str) -> str:
    return _digest("patient", tenant, patient_id)


def card_trigger(card: dict) -> tuple[str, str]:
    """(cause, trigger digest) of a rendered card."""
    topic = (card.get("source") or {}).get("topic") or {}
    cause = str(topic.get("code") or "unknown")
    return cause, _digest("trigger", cause, str(card.get("summary") or ""))


@dataclass
class FeedbackStore:
    client: redis.Redis
    metrics: Metrics
    prefix: str = "rls:fb"

    @classmethod
    def from_url(cls, url: str, metrics: Metrics) -> FeedbackStore:
        # Short timeouts: Redis trouble must cost a hook milliseconds, not its deadline.
        client = redis.Redis.from_url(
            url, socket_timeout=0.25, socket_connect_timeout=0.25, retry_on_timeout=False
        )
        return cls(client, metrics)

    def _fail(self, operation: str, exc: Exception) -> None:
        self.metrics.store_errors.labels(operation).inc()
        self.metrics.store_up.set(0)
        log.warning(
            "store operation failed", extra={"operation": operation, "error_type": type(exc).__name__}
        )

    def ping(self) -> bool:
        try:
            ok = bool(self.client.ping())
        except redis.RedisError as exc:
            self._fail("ping", exc)
            return False
        self.metrics.store_up.set(1 if ok else 0)
        return ok

    def filter_and_remember(
        self, tenant: str, patient: str, service_id: str, cards: list[dict]
    ) -> list[dict]:
        """Drop suppressed cards, remember the others' uuids. On store failure return ``cards`` unchanged."""
        if not cards:
            return cards
        triggers = [card_trigger(c) for c in cards]
        sup_keys = [f"{self.prefix}:{tenant}:sup:{patient}:{trig}" for _, trig in triggers]
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.mget(sup_keys)
            for card, (cause, trig) in zip(cards, triggers, strict=True):
                record = orjson.dumps(
                    {"patient": patient, "cause": cause, "trigger": trig, "service": service_id}
                )
                pipe.set(f"{self.prefix}:{tenant}:card:{card.get('uuid')}", record, ex=CARD_MEMORY_SECONDS)
            suppressed = pipe.execute()[0]
        except redis.RedisError as exc:
            self._fail("suppression", exc)
            return cards
        kept = []
        for card, (cause, _), flag in zip(cards, triggers, suppressed, strict=True):
            if flag:
                self.metrics.cards_suppressed.labels(cause).inc()
            else:
                kept.append(card)
        return kept

    def record(self, tenant: str, service_id: str, item: dict, suppression_seconds: int) -> bool:
        """Store one feedback item; an override suppresses its card's trigger. False: store failed."""
        try:
            raw = self.client.get(f"{self.prefix}:{tenant}:card:{item['card']}")
            card = orjson.loads(raw) if raw else None
            entry = {
                "service": service_id,
                "card": item["card"],
                "outcome": item["outcome"],
                "outcomeTimestamp": item.get("outcomeTimestamp"),
                "overrideReason": item.get("overrideReason"),
                "acceptedSuggestions": item.get("acceptedSuggestions"),
                "cause": card and card["cause"],
            }
            pipe = self.client.pipeline(transaction=False)
            pipe.lpush(f"{self.prefix}:{tenant}:log", orjson.dumps(entry))
            pipe.ltrim(f"{self.prefix}:{tenant}:log", 0, 99_999)
            if card and item["outcome"] == "overridden" and suppression_seconds > 0:
                key = f"{self.prefix}:{tenant}:sup:{card['patient']}:{card['trigger']}"
                pipe.set(key, b"1", ex=suppression_seconds)
            pipe.execute()
        except redis.RedisError as exc:
            self._fail("feedback", exc)
            return False
        return True
