"""Optional write-back of actionable findings as FHIR ``DetectedIssue`` resources (panel ``writeback: true``).

Each (panel, patient, finding) has one DetectedIssue with a deterministic id, written with PUT, so a
re-run or a chunk processed twice updates the same resource instead of adding another.
"""

from __future__ import annotations

import hashlib
from typing import Any

import requests

# The cards' cause code system: a DetectedIssue and a card about the same cause carry the same Coding.
from rls_cds.core.cards import CAUSE_SYSTEM


def issue_id(panel: str, patient_id: str, finding: dict) -> str:
    """Same finding (cause; for drug causes also which drug, as the store compares them), same id."""
    from rls_cds.background.store import finding_identity

    key = f"{panel}|{patient_id}|{finding_identity(finding)}"
    return "rls-" + hashlib.sha256(key.encode()).hexdigest()[:40]


def detected_issue(panel: str, patient_id: str, finding: dict, identified: str) -> dict:
    evidence = [
        {"reference": e["resource"]}
        for e in finding.get("evidence") or []
        if isinstance(e, dict) and isinstance(e.get("resource"), str) and "/" in e["resource"]
    ]
    out: dict[str, Any] = {
        "resourceType": "DetectedIssue",
        "id": issue_id(panel, patient_id, finding),
        "status": "preliminary",
        "code": {"coding": [{"system": CAUSE_SYSTEM, "code": finding["cause"]}]},
        "severity": "moderate" if finding.get("strength") in ("strong", "moderate") else "low",
        "patient": {"reference": f"Patient/{patient_id}"},
        "identifiedDateTime": identified,
        "detail": str(finding.get("summary") or finding["cause"])[:1000],
    }
    if evidence:
        out["implicated"] = evidence
    if finding.get("action"):
        out["mitigation"] = [{"action": {"text": str(finding["action"])[:1000]}}]
    return out


class DetectedIssueWriter:
    def __init__(self, session: requests.Session, base: str, panel: str, timeout: float = 30.0):
        self.session = session
        self.base = base.rstrip("/")
        self.panel = panel
        self.timeout = timeout

    def __call__(self, patient_id: str, outcome: Any) -> None:
        from datetime import UTC, datetime

        now = datetime.now(UTC).isoformat()
        for finding in outcome.findings:
            if not finding.get("actionable"):
                continue
            res = detected_issue(self.panel, patient_id, finding, now)
            resp = self.session.put(
                f"{self.base}/DetectedIssue/{res['id']}",
                json=res,
                headers={"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"},
                timeout=self.timeout,
                allow_redirects=False,
            )
            if resp.status_code not in (200, 201):
                raise RuntimeError(f"DetectedIssue write-back failed: HTTP {resp.status_code}")
