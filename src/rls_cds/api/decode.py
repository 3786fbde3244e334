"""A hook request's bytes -> the request object the handler checks, its prefetch read thin.

A large patient-view request is half a megabyte of FHIR JSON of which the rules read a small part.
Parsing all of it into dicts (orjson), checking its nesting and freeing it again cost ~5 ms of a
~15 ms answer. Here msgspec decodes the envelope and keeps each prefetch Bundle entry as raw bytes
(a view into the body), then decodes each entry straight into the thin Structs of
``rls_cds.fhir.thin``: only the fields the rules read, type-checked at C speed (DESIGN §1).

Nothing is read differently. A resource the thin schema does not accept (another resourceType, a
field of an unexpected type) and anything that is not a Bundle is parsed whole with orjson instead,
as every body was before, so the core's lenient readings and warnings are unchanged. The bytes of
every thin resource are kept: evidence is still validated whole with fhir.resources (``as_sent``).

Nesting: the configured depth limit applies to everything parsed whole (context, authorization,
fallback resources). Fields the thin schema skips are never built; msgspec still refuses nesting
beyond Python's recursion limit there, and that answers the same 400.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson

from rls_cds.api.errors import ApiError, invalid_json, json_depth_exceeds
from rls_cds.fhir import thin

_ABSENT = msgspec.Raw(b"")


class _Envelope(msgspec.Struct):
    """The top level: every field kept raw; unknown fields are skipped (still syntax-checked)."""

    hook: msgspec.Raw = _ABSENT
    hookInstance: msgspec.Raw = _ABSENT  # noqa: N815
    fhirServer: msgspec.Raw = _ABSENT  # noqa: N815
    fhirAuthorization: msgspec.Raw = _ABSENT  # noqa: N815
    context: msgspec.Raw = _ABSENT
    prefetch: msgspec.Raw = _ABSENT
    patient: msgspec.Raw = _ABSENT  # CDS Hooks 1.0 top-level patient id


class _PrefetchEnvelope(_Envelope):
    """The same with ``prefetch`` split by key in the same pass (the common case: an object)."""

    prefetch: dict[str, msgspec.Raw] = {}


class _Entry(msgspec.Struct):
    resource: msgspec.Raw = _ABSENT


class _Bundle(msgspec.Struct):
    resourceType: str  # noqa: N815
    type: str | None = None
    entry: list[_Entry] | None = None


class _ThinEntry(msgspec.Struct):
    resource: thin.Resource | None = None


class _ThinBundle(msgspec.Struct):
    """A Bundle of thin resources only: one decoder call for the whole Bundle (the common case)."""

    resourceType: str  # noqa: N815
    type: str | None = None
    entry: list[_ThinEntry] | None = None


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_PREFETCH_ENVELOPE = msgspec.json.Decoder(_PrefetchEnvelope)
_BUNDLE = msgspec.json.Decoder(_Bundle)
_THIN_BUNDLE = msgspec.json.Decoder(_ThinBundle)
_RESOURCE = thin.LINE_DECODER


class _LazyEntries:
    """A Bundle's entries as raw bytes, split only when one of its resources is validated."""

    __slots__ = ("_entries", "raw")

    def __init__(self, raw: msgspec.Raw):
        self.raw = raw
        self._entries: list[msgspec.Raw] | None = None

    def __getitem__(self, index: int) -> msgspec.Raw:
        if self._entries is None:
            self._entries = [e.resource for e in _BUNDLE.decode(self.raw).entry or ()]
        return self._entries[index]


# Depth of a value below the top-level object: prefetch value 2, entry.resource 5.
_PREFETCH_VALUE_DEPTH = 2
_ENTRY_RESOURCE_DEPTH = 5


@dataclass
class HookBody:
    """``obj``: the request as a dict (prefetch Bundles hold thin resource dicts); ``originals``: where
    the bytes of each thin resource are, by the ``id()`` of its dict (alive as long as ``obj``):
    (its entries, index) or (its bytes, -1)."""

    obj: dict[str, Any]
    originals: dict[int, tuple[Any, int]] = field(default_factory=dict)

    def as_sent(self, resource: dict) -> dict | None:
        """The whole resource as the EHR sent it (for validation), or None if it was parsed whole.

        Fields the thin decoder skipped were only syntax-checked: a number orjson refuses (1e400, an
        integer beyond 64 bits) is read by the standard library instead, and a resource that cannot
        be read at all (nested past the recursion limit) comes back as ``{}``, which validation
        refuses, so that resource alone is dropped."""
        where = self.originals.get(id(resource))
        if where is None:
            return None
        source, index = where
        try:
            raw = memoryview(source if index < 0 else source[index])
            try:
                return orjson.loads(raw)
            except orjson.JSONDecodeError:
                return json.loads(bytes(raw))
        except (ValueError, RecursionError):
            return {}


def decode_hook_request(body: bytes, max_depth: int) -> HookBody:
    """Decode a hook request (see module doc). Raises ``ApiError`` 400 for bodies the old whole-body
    parse refused: empty, malformed, not an object, nested too deeply."""
    if not body:
        raise ApiError(400, "invalid_json", "the request body is empty")
    if not body.isascii():  # msgspec does not check the strings it skips (or reads as raw bytes)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "invalid_json", "the request body is not valid UTF-8 JSON") from None
    try:
        try:
            envelope = _PREFETCH_ENVELOPE.decode(body)
        except msgspec.ValidationError:  # not an object, or a prefetch that is not one
            envelope = _ENVELOPE.decode(body)
    except msgspec.ValidationError:
        raise ApiError(400, "invalid_request", "the request body must be a JSON object") from None
    except msgspec.DecodeError:
        raise ApiError(400, "invalid_json", "the request body is not valid JSON") from None
    except RecursionError:
        raise _too_deep(max_depth) from None
    try:
        return _parts(envelope, max_depth)
    except RecursionError:  # a prefetch part nested past Python's limit (where msgspec reads it)
        raise _too_deep(max_depth) from None


def _parts(envelope: _Envelope, max_depth: int) -> HookBody:
    body_out = HookBody(obj={})
    for name in envelope.__struct_fields__:
        raw = getattr(envelope, name)
        if isinstance(raw, dict):  # prefetch, split by key
            body_out.obj[name] = {
                key: _prefetch_value(value, max_depth, body_out.originals) for key, value in raw.items()
            }
        elif len(raw):
            body_out.obj[name] = _whole(raw, max_depth - 1, max_depth)
    return body_out


def _too_deep(max_depth: int) -> ApiError:
    return ApiError(400, "json_too_deep", f"JSON nesting deeper than {max_depth} levels")


def _whole(raw: msgspec.Raw, allowed: int, max_depth: int) -> Any:
    """Parse a part whole, as the whole body used to be: orjson plus the nesting check."""
    view = memoryview(raw)
    try:
        value = orjson.loads(view)
    except orjson.JSONDecodeError as exc:  # e.g. invalid UTF-8 inside a string, which msgspec let through
        raise invalid_json(exc, max_depth) from None
    if isinstance(value, dict | list) and json_depth_exceeds(bytes(view), allowed):
        raise _too_deep(max_depth)
    return value


def _prefetch_value(raw: msgspec.Raw, max_depth: int, originals: dict[int, tuple[Any, int]]) -> Any:
    try:
        bundle = _THIN_BUNDLE.decode(raw)
    except msgspec.ValidationError:  # another resource type or an unexpected field type in there
        return _mixed_bundle(raw, max_depth, originals)
    if bundle.resourceType != "Bundle" or bundle.entry is None:
        return _whole(raw, max_depth - _PREFETCH_VALUE_DEPTH, max_depth)  # a resource, an empty Bundle
    entries = _LazyEntries(raw)
    at = [i for i, entry in enumerate(bundle.entry) if entry.resource is not None]
    # One conversion for all: Structs -> plain dicts, the shape the core reads.
    resources = msgspec.to_builtins([bundle.entry[i].resource for i in at])
    for resource, index in zip(resources, at, strict=True):
        originals[id(resource)] = (entries, index)
    return {"resourceType": "Bundle", "type": bundle.type, "entry": [{"resource": r} for r in resources]}


def _mixed_bundle(raw: msgspec.Raw, max_depth: int, originals: dict[int, tuple[Any, int]]) -> Any:
    """Entry by entry: thin where the schema allows, whole (orjson) for the rest, order kept."""
    try:
        bundle = _BUNDLE.decode(raw)
    except msgspec.ValidationError:
        bundle = None
    if bundle is None or bundle.resourceType != "Bundle" or bundle.entry is None:
        return _whole(raw, max_depth - _PREFETCH_VALUE_DEPTH, max_depth)  # null, a resource, oddities
    entries: list[dict] = []
    structs: list[Any] = []
    thin_at: list[tuple[int, msgspec.Raw]] = []  # (position in entries, bytes) of each thin resource
    for entry in bundle.entry:
        if not len(entry.resource):
            continue  # an entry without a resource: nothing to read, as before
        try:
            structs.append(_RESOURCE.decode(entry.resource))
            thin_at.append((len(entries), entry.resource))
            entries.append({})
        except msgspec.ValidationError:
            resource = _whole(entry.resource, max_depth - _ENTRY_RESOURCE_DEPTH, max_depth)
            entries.append({"resource": resource})
    for resource, (at, resource_raw) in zip(msgspec.to_builtins(structs), thin_at, strict=True):
        originals[id(resource)] = (resource_raw, -1)
        entries[at]["resource"] = resource
    return {"resourceType": "Bundle", "type": bundle.type, "entry": entries}
