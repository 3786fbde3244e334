"""Panels as configuration: ``settings.panels_file`` (YAML).

    panels:
      ckd-clinic:
        title: CKD clinic, RLS patients
        fhir_server: https://fhir.example.org/r4   # SMART credentials: settings.fhir_servers_file
        group: ckd-rls-2026           # a Group on that server ...
        # patients: [pat-1, pat-2]    # ... or a list of patient ids ...
        # search: Patient?general-practitioner=Practitioner/17   # ... or a FHIR search
        strategy: bulk                # bulk (Group/$export) | search (per-patient searches)
        schedule: "0 2 * * *"         # cron: minute hour day-of-month month day-of-week (UTC)
        incremental: false            # bulk: _since = the previous successful run's export time
                                      # (a full run again every RLS_PANEL_FULL_RUN_EVERY_DAYS)
        writeback: false              # write DetectedIssue resources back (off by default)
        tenant: hospital-a            # assessment store namespace (default: the server's tenant)

Errors raise ``PanelConfigError`` naming the file, the panel and the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rls_cds.fhir.ids import FHIR_ID

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_KEYS = {
    "title",
    "fhir_server",
    "group",
    "patients",
    "search",
    "strategy",
    "schedule",
    "incremental",
    "writeback",
    "tenant",
}
_CRON_FIELD = re.compile(r"^[\d*/,\-]+$")


class PanelConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Panel:
    id: str
    fhir_server: str
    strategy: str = "bulk"
    title: str = ""
    group: str | None = None
    patients: tuple[str, ...] = ()
    search: str | None = None
    schedule: str | None = None
    incremental: bool = False
    writeback: bool = False
    tenant: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def source(self) -> str:
        return "group" if self.group else "patients" if self.patients else "search"


def cron_fields(expr: str) -> dict[str, str]:
    """'m h dom mon dow' -> celery crontab keyword arguments."""
    parts = expr.split()
    if len(parts) != 5 or not all(_CRON_FIELD.match(p) for p in parts):
        raise ValueError("schedule must be a cron expression with 5 fields, e.g. '0 2 * * *'")
    names = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
    return dict(zip(names, parts, strict=True))


def parse_panels(doc: Any, where: str = "panels file") -> dict[str, Panel]:
    if doc is None:
        return {}
    if not isinstance(doc, dict) or not isinstance(doc.get("panels", {}), dict):
        raise PanelConfigError(f"{where}: expected a mapping with a 'panels' mapping")
    out: dict[str, Panel] = {}
    for pid, body in (doc.get("panels") or {}).items():
        out[str(pid)] = _panel(str(pid), body, where)
    return out


def _panel(pid: str, body: Any, where: str) -> Panel:
    def bad(msg: str) -> PanelConfigError:
        return PanelConfigError(f"{where}: panel {pid!r}: {msg}")

    if not _ID.match(pid):
        raise bad("id must be letters, digits, '.', '_' or '-' (at most 64)")
    if not isinstance(body, dict):
        raise bad("expected a mapping")
    unknown = sorted(set(body) - _KEYS)
    if unknown:
        raise bad(f"unknown key(s) {unknown}")
    server = body.get("fhir_server")
    if not isinstance(server, str) or not server.startswith(("http://", "https://")):
        raise bad("'fhir_server' must be an http(s) base URL")
    sources = [k for k in ("group", "patients", "search") if body.get(k)]
    if len(sources) != 1:
        raise bad("give exactly one of 'group', 'patients' or 'search'")
    strategy = body.get("strategy", "bulk" if body.get("group") else "search")
    if strategy not in ("bulk", "search"):
        raise bad("'strategy' must be 'bulk' or 'search'")
    if strategy == "bulk" and not body.get("group"):
        raise bad("strategy 'bulk' exports a Group: give 'group' (or use strategy 'search')")
    patients = body.get("patients") or ()
    if patients and (
        not isinstance(patients, list) or not all(isinstance(p, str) and FHIR_ID.match(p) for p in patients)
    ):
        raise bad("'patients' must be a list of FHIR ids")
    group = body.get("group")
    if group is not None and not (isinstance(group, str) and FHIR_ID.match(group)):
        raise bad("'group' must be a FHIR id")
    search = body.get("search")
    if search is not None and not (isinstance(search, str) and search.startswith("Patient?")):
        raise bad("'search' must be a Patient search, e.g. 'Patient?general-practitioner=Practitioner/1'")
    schedule = body.get("schedule")
    if schedule is not None:
        try:
            cron_fields(str(schedule))
        except ValueError as exc:
            raise bad(str(exc)) from None
    return Panel(
        id=pid,
        fhir_server=server.rstrip("/"),
        strategy=strategy,
        title=str(body.get("title") or pid),
        group=group,
        patients=tuple(patients),
        search=search,
        schedule=str(schedule) if schedule is not None else None,
        incremental=bool(body.get("incremental", False)),
        writeback=bool(body.get("writeback", False)),
        tenant=body.get("tenant"),
    )


def server_tenant(base: str, settings) -> str:
    """The tenant of a FHIR server in settings.fhir_servers_file; "default" when it is not listed."""
    from rls_cds.fhir.smart import load_fhir_servers, normalize_base

    cfg = load_fhir_servers(settings).get(normalize_base(base))
    return (cfg.tenant if cfg else None) or "default"


def panel_tenant(panel: Panel | dict, settings) -> str:
    """A panel's tenant: its own ``tenant``, else its FHIR server's, else "default".

    Raises FhirServersError when the servers file cannot be read: callers that guard access decide
    what that means (the API refuses; a worker storing assessments falls back to "default").
    """
    own = panel.get("tenant") if isinstance(panel, dict) else panel.tenant
    server = panel.get("fhir_server") if isinstance(panel, dict) else panel.fhir_server
    return own or server_tenant(server, settings)


def load_panels(settings) -> dict[str, Panel]:
    path = settings.panels_file
    if path is None:
        return {}
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PanelConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise PanelConfigError(f"{path}: invalid YAML ({exc.__class__.__name__})") from None
    return parse_panels(doc, str(path))
