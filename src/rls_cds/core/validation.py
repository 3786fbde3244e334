"""fhir.resources (R4B models) validation of evidence resources and of every resource we emit.

Full-model validation costs far more than reading the JSON (DESIGN §1), so the engine calls this
only for resources that become evidence (and for everything in ``strict`` mode). A failure is
reported by resource type/id and the failing *field path* only: pydantic's own messages quote the
offending input, which may be PHI.

Lenient repairs: some EHRs and the CDS Hooks sandbox send draft MedicationRequests with
``category`` as one object instead of an array. That one deviation is repaired (on a copy) and
recorded, so the order is still judged and the card can say the input was read leniently.

Verdict memo: EHRs send the same resources again and again (every chart open of a patient,
order-select firing while an order is edited, background re-evaluations), and validating the ~25
evidence resources of a large patient was ~40 % of its evaluation. So the ``(valid, reason)``
verdict is remembered per process, keyed by the exact bytes of the repaired resource
(``orjson.dumps``: same dict content and key order, same bytes). That is safe because the verdict is
a pure function of those bytes and of the fhir.resources version loaded in the process; repairs and
their notes are still computed on every call. Values that bytes cannot tell apart are never keyed:
non-JSON types make orjson raise (the resource is then validated uncached), and a key containing
``null`` (``None``, but also NaN/Infinity, which orjson writes as ``null``) is not cached. Python
callers passing UUID or Enum objects (which orjson writes as strings) are outside the contract: the
core reads JSON-decoded dicts. Verdicts that are not a ValidationError ("unreadable") are not cached.

Bounded LRU (``set_cache_size``; 0 disables and clears). The adapters apply the setting
``validation_cache_size`` at start-up; the core reads no settings. Memory: the table holds a 16-byte
BLAKE2b digest of that JSON per entry (not the JSON: a large narrative must not grow the memo), so an
entry costs ~0.2 KB whatever the resource's size, ~2 MB per process at the default of 8192 entries.
Thread-safe: hooks run in a
thread pool; one lock guards the table and the counters (held for a dict operation only, never
during validation).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from functools import cache
from typing import Any, NamedTuple

import orjson
from pydantic import ValidationError

from rls_cds.core.resources import ref_of

# Fields that are arrays in FHIR R4 but are sometimes sent as a single object.
_ARRAY_FIELDS = {
    "MedicationRequest": ("category", "dosageInstruction", "note", "reasonCode", "identifier"),
    "Observation": ("category", "interpretation", "note", "identifier", "performer"),
    "Condition": ("category", "note", "identifier"),
}

DEFAULT_CACHE_SIZE = 8192
# Anything that is not plain JSON (datetime, dataclass, str/int/dict subclasses) makes orjson raise:
# such a resource is validated without the memo.
_KEY_OPTIONS = (
    orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


class CacheInfo(NamedTuple):
    hits: int
    misses: int
    size: int
    maxsize: int


class _Verdicts:
    """LRU of ``key bytes -> (valid, reason)`` with hit/miss counters, one lock for all of it."""

    def __init__(self, maxsize: int):
        self._lock = threading.Lock()
        self._items: OrderedDict[bytes, tuple[bool, str | None]] = OrderedDict()
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0

    def get(self, key: bytes) -> tuple[bool, str | None] | None:
        with self._lock:
            verdict = self._items.get(key)
            if verdict is None:
                self.misses += 1
            else:
                self._items.move_to_end(key)
                self.hits += 1
            return verdict

    def put(self, key: bytes, verdict: tuple[bool, str | None]) -> None:
        with self._lock:
            if self.maxsize <= 0:
                return
            self._items[key] = verdict
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def resize(self, maxsize: int) -> None:
        with self._lock:
            self.maxsize = maxsize
            while len(self._items) > max(maxsize, 0):
                self._items.popitem(last=False)

    def info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(self.hits, self.misses, len(self._items), self.maxsize)


_verdicts = _Verdicts(DEFAULT_CACHE_SIZE)


def set_cache_size(n: int) -> None:
    """Bound the verdict memo to ``n`` entries (oldest-used evicted first); 0 disables and clears it."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError("cache size must be an integer >= 0")
    _verdicts.resize(n)


def cache_info() -> CacheInfo:
    """Hits, misses, current entries and bound of the verdict memo (this process)."""
    return _verdicts.info()


@cache
def _model(resource_type: str):
    from fhir.resources.R4B import get_fhir_model_class

    try:
        return get_fhir_model_class(resource_type)
    except (KeyError, ValueError):
        return None


def repair(resource: dict) -> tuple[dict, list[str]]:
    """A copy of ``resource`` with known harmless deviations fixed, plus what was fixed."""
    fields = _ARRAY_FIELDS.get(resource.get("resourceType"), ())
    notes = []
    fixed = resource
    for name in fields:
        value = fixed.get(name)
        if isinstance(value, dict):
            if fixed is resource:
                fixed = dict(resource)
            fixed[name] = [value]
            notes.append(f"'{name}' was sent as an object, read as a one-element array")
    return fixed, notes


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc or '(resource)'}: {err.get('type', 'invalid')}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def _key(fixed: dict) -> bytes | None:
    """The memo key of a repaired resource, or None when its bytes would not identify it exactly."""
    if _verdicts.maxsize <= 0:
        return None
    try:
        key = orjson.dumps(fixed, option=_KEY_OPTIONS)
    except TypeError:  # non-JSON value, key that is not a str, int beyond 64 bits, too deep, cycle
        return None
    if b"null" in key:
        return None
    # A 128-bit digest, not the JSON itself: memory per entry stays fixed whatever the resource
    # carries (narratives, notes), and a collision is out of reach of any input.
    return hashlib.blake2b(key, digest_size=16).digest()


def validate(resource: Any) -> tuple[bool, str | None, list[str]]:
    """(valid, reason, repairs). ``reason`` names fields and error types only, never values."""
    if not isinstance(resource, dict):
        return False, "not a JSON object", []
    model = _model(str(resource.get("resourceType")))
    if model is None:
        return False, "unknown resourceType", []
    fixed, notes = repair(resource)
    key = _key(fixed)
    if key is not None:
        verdict = _verdicts.get(key)
        if verdict is not None:
            return verdict[0], verdict[1], notes
    try:
        model.model_validate(fixed)
    except ValidationError as exc:
        verdict = (False, _describe(exc))
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
        return False, f"unreadable ({type(exc).__name__})", notes
    else:
        verdict = (True, None)
    if key is not None:
        _verdicts.put(key, verdict)
    return verdict[0], verdict[1], notes


def check_emitted(resource: dict) -> dict:
    """Validate a resource the service is about to emit; a failure here is a bug, so raise it."""
    ok, reason, _ = validate(resource)
    if not ok:
        raise ValueError(f"emitted {ref_of(resource)} is not valid FHIR R4B: {reason}")
    return resource
