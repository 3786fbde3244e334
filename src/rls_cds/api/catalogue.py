"""The service catalogue: `cds-hooks/services.yaml`, with Observation prefetch generated from terminology.

The YAML is data an integrator can read; this module only expands the generated prefetch entries
(LOINC codes from the terminology tables, split across several keys so every query stays under the
configured length) and renders prefetch tokens for the FHIR fallback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rls_cds.fhir.ids import FHIR_ID

SUPPORTED_HOOKS = {"patient-view", "order-select", "order-sign", "medication-prescribe"}
_TOKEN = re.compile(r"\{\{\s*([A-Za-z.]+)\s*\}\}")


class CatalogueError(Exception):
    pass


@dataclass(frozen=True)
class Service:
    id: str
    hook: str
    title: str
    description: str
    usage_requirements: str | None
    prefetch: dict[str, str] = field(default_factory=dict)

    def discovery(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "hook": self.hook,
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "prefetch": dict(self.prefetch),
        }
        if self.usage_requirements:
            out["usageRequirements"] = self.usage_requirements
        return out


def _chunk_codes(spec: dict, codes: list[str]) -> list[str]:
    """Split ``codes`` into as few queries as possible, each at most ``max_query_chars`` long."""
    template, limit = spec["template"], int(spec.get("max_query_chars", 1800))
    system = spec.get("code_system")
    tokens = [f"{system}|{c}" if system else c for c in codes]
    queries: list[str] = []
    current: list[str] = []
    for tok in tokens:
        trial = template.replace("{codes}", ",".join([*current, tok]))
        if current and len(trial) > limit:
            queries.append(template.replace("{codes}", ",".join(current)))
            current = []
        current.append(tok)
    if current:
        queries.append(template.replace("{codes}", ",".join(current)))
    return queries


def _expand_prefetch(raw: dict, observation_codes: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (raw or {}).items():
        if isinstance(value, str):
            out[key] = value
        elif isinstance(value, dict) and value.get("generate") == "observation_codes":
            # No terminology (yet): leave the key out; the service then has no lab query to run
            # and reports Observation as missing rather than pretending labs were read.
            for i, query in enumerate(_chunk_codes(value, observation_codes), start=1):
                out[f"{key}{i}"] = query
        else:
            raise CatalogueError(f"prefetch {key!r}: expected a query string or a generate block")
    for key, query in out.items():
        for token in _TOKEN.findall(query):
            if token not in ("context.patientId", "userPractitionerId"):
                raise CatalogueError(f"prefetch {key!r}: token {{{{{token}}}}} is not allowed")
    return out


def load_catalogue(catalogue_dir: Path, terminology: Any | None) -> dict[str, Service]:
    data = yaml.safe_load((Path(catalogue_dir) / "services.yaml").read_text())
    codes: list[str] = []
    if terminology is not None:
        codes = sorted({code for system, code in terminology.all_lab_codes() if system.endswith("loinc.org")})
    services: dict[str, Service] = {}
    for row in data.get("services") or []:
        if row["hook"] not in SUPPORTED_HOOKS:
            raise CatalogueError(f"service {row['id']!r}: unsupported hook {row['hook']!r}")
        if row["id"] in services:
            raise CatalogueError(f"duplicate service id {row['id']!r}")
        services[row["id"]] = Service(
            id=row["id"],
            hook=row["hook"],
            title=row["title"],
            description=" ".join(str(row["description"]).split()),
            usage_requirements=row.get("usageRequirements"),
            prefetch=_expand_prefetch(row.get("prefetch") or {}, codes),
        )
    return services


def render_query(template: str, context: dict) -> str | None:
    """Fill prefetch tokens from the hook context; None when a token has no value."""
    patient = context.get("patientId")
    user = str(context.get("userId") or "")
    values = {
        "context.patientId": patient if isinstance(patient, str) else None,
        # 2.0: {{userPractitionerId}} is the id part of context.userId when it is a Practitioner.
        "userPractitionerId": user.split("/", 1)[1] if user.startswith("Practitioner/") else None,
    }
    missing = False

    def sub(m: re.Match) -> str:
        nonlocal missing
        v = values.get(m.group(1))
        if not v or not FHIR_ID.match(v):  # anything else could inject query parameters or paths
            missing = True
            return ""
        return v

    out = _TOKEN.sub(sub, template)
    return None if missing else out


def resource_kind(template: str) -> str:
    """'Observation?patient=...' -> 'Observation'; 'Patient/{{...}}' -> 'Patient'."""
    return re.split(r"[/?]", template, maxsplit=1)[0]
