"""JSON in any of the shapes EHRs send -> a flat list of FHIR resource dicts.

Accepted shapes: a single resource, a Bundle of any type (entries' ``resource``, nested Bundles
unpacked), a CDS Hooks request (``prefetch`` values under any key names, ``context.draftOrders`` /
``context.medications``), a list of any of these, or the raw JSON bytes/str of any of them.
Resources are recognised by ``resourceType`` alone, so prefetch key names never matter.

Nothing here raises on bad input: what cannot be read is skipped and reported as a warning that
names only the position and the resourceType/id (never resource contents: they may carry PHI).
Lenient readings (a Bundle without ``type``, a hook request's draftOrders as a bare list) are
reported too, so a caller can tell the EHR what it sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

# Deep enough for real Bundles (Bundle > entry > resource > contained ...), shallow enough that a
# hostile document cannot exhaust the stack.
_MAX_DEPTH = 8


def ref_of(resource: dict) -> str:
    """'Type/id' of a resource dict ('Type/?' when it has no usable id)."""
    rid = resource.get("id")
    return f"{resource.get('resourceType')}/{rid if isinstance(rid, str) and rid else '?'}"


@dataclass
class _Walk:
    resources: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, obj: Any, where: str, depth: int) -> None:
        if obj is None:
            return
        if depth > _MAX_DEPTH:
            self.warnings.append(f"{where}: nested too deeply; skipped")
            return
        if isinstance(obj, list):
            for i, item in enumerate(obj):
                self.add(item, f"{where}[{i}]", depth + 1)
            return
        if not isinstance(obj, dict):
            self.warnings.append(f"{where}: not a JSON object ({type(obj).__name__}); skipped")
            return
        rtype = obj.get("resourceType")
        if rtype == "Bundle":
            self._bundle(obj, where, depth)
        elif isinstance(rtype, str) and rtype:
            self.resources.append(obj)
        elif "hook" in obj or "prefetch" in obj or "context" in obj:
            self._hook_request(obj, where, depth)
        else:
            self.warnings.append(f"{where}: object without resourceType; skipped")

    def _bundle(self, bundle: dict, where: str, depth: int) -> None:
        if not isinstance(bundle.get("type"), str):
            self.warnings.append(f"{where}: Bundle without 'type'; read leniently as a collection")
        entries = bundle.get("entry")
        if entries is None:
            return
        if not isinstance(entries, list):
            self.warnings.append(f"{where}: Bundle.entry is not an array; skipped")
            return
        leaf_ok = depth + 1 <= _MAX_DEPTH
        for i, entry in enumerate(entries):
            # Hot path (hundreds of entries per request): a plain resource entry is taken as is,
            # without formatting the position string only a warning would use.
            if leaf_ok and type(entry) is dict:
                resource = entry.get("resource")
                if type(resource) is dict:
                    rtype = resource.get("resourceType")
                    if type(rtype) is str and rtype and rtype != "Bundle":
                        self.resources.append(resource)
                        continue
            here = f"{where}.entry[{i}]"
            if not isinstance(entry, dict):
                self.warnings.append(f"{here}: not a JSON object; skipped")
                continue
            resource = entry.get("resource")
            if resource is None:
                continue  # e.g. a search OperationOutcome-less entry or a deleted history entry
            if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
                self.add(resource, here, depth + 1)
            else:
                self.warnings.append(f"{here}: entry.resource is not a FHIR resource; skipped")

    def _hook_request(self, request: dict, where: str, depth: int) -> None:
        prefetch = request.get("prefetch")
        if isinstance(prefetch, dict):
            for key in sorted(prefetch):  # sorted: same order whatever order the EHR used
                self.add(prefetch[key], f"{where}.prefetch.{key}", depth + 1)
        drafts, warnings = draft_orders_of(request)
        self.resources.extend(drafts)
        self.warnings.extend(warnings)


def flatten(obj: Any) -> tuple[list[dict], list[str]]:
    """Every FHIR resource found in ``obj`` (see module doc), plus warnings about what was skipped."""
    walk = _Walk()
    if isinstance(obj, bytes | bytearray | memoryview | str):
        try:
            obj = orjson.loads(obj)
        except orjson.JSONDecodeError as exc:
            return [], [f"input: not valid JSON ({exc.msg if hasattr(exc, 'msg') else 'decode error'})"]
    walk.add(obj, "input", 0)
    return walk.resources, walk.warnings


def draft_orders_of(request: Any) -> tuple[list[dict], list[str]]:
    """The draft orders of a CDS Hooks request (``context.draftOrders`` or 1.0 ``context.medications``)."""
    if not isinstance(request, dict):
        return [], []
    context = request.get("context")
    if not isinstance(context, dict):
        return [], []
    raw = context.get("draftOrders")
    if raw is None:
        raw = context.get("medications")
    if raw is None:
        return [], []
    walk = _Walk()
    if isinstance(raw, list):
        walk.warnings.append("context.draftOrders: a bare array, not a Bundle; read leniently")
    walk.add(raw, "context.draftOrders", 1)
    return walk.resources, walk.warnings


@dataclass
class HookInput:
    """A file or body split into what the core needs: the record, the drafts being decided, the hook."""

    resources: list[dict]
    draft_orders: list[dict]
    hook: str | None
    patient_id: str | None
    warnings: list[str]
    draft_warnings: list[str] = field(default_factory=list)  # about the draftOrders container itself


def read_input(obj: Any) -> HookInput:
    """Split a CDS Hooks request (or a Bundle / resource / list) into record and draft orders."""
    if isinstance(obj, bytes | bytearray | memoryview | str):
        try:
            obj = orjson.loads(obj)
        except orjson.JSONDecodeError:
            return HookInput([], [], None, None, ["input: not valid JSON"])
    is_request = (
        isinstance(obj, dict) and "resourceType" not in obj and ("prefetch" in obj or "context" in obj)
    )
    if not is_request:
        resources, warnings = flatten(obj)
        return HookInput(resources, [], None, None, warnings)
    walk = _Walk()
    prefetch = obj.get("prefetch")
    if isinstance(prefetch, dict):
        for key in sorted(prefetch):
            walk.add(prefetch[key], f"prefetch.{key}", 1)
    elif prefetch is not None:
        walk.warnings.append("prefetch: not an object; skipped")
    drafts, warnings = draft_orders_of(obj)
    context = obj.get("context") if isinstance(obj.get("context"), dict) else {}
    selections = context.get("selections")
    if obj.get("hook") == "order-select" and isinstance(selections, list) and selections:
        wanted = {s for s in selections if isinstance(s, str)}
        drafts = [d for d in drafts if ref_of(d) in wanted]
    hook = obj.get("hook") if isinstance(obj.get("hook"), str) else None
    pid = context.get("patientId") if isinstance(context.get("patientId"), str) else None
    return HookInput(walk.resources, drafts, hook, pid, walk.warnings + warnings, warnings)
