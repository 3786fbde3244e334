"""Code systems: URI normalisation and per-system code syntax (with check digits where the system has one)."""

from __future__ import annotations

import re

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"

# Every spelling seen in EHR data (FHIR URIs, HL7 v3 OIDs, short names used in the CSV tables).
_SYSTEM_ALIASES = {
    ICD10CM: [
        "http://hl7.org/fhir/sid/icd-10-cm",
        "http://hl7.org/fhir/sid/icd-10-us",
        "urn:oid:2.16.840.1.113883.6.90",
        "icd10cm",
        "icd-10-cm",
        "icd10",
    ],
    SNOMED: [
        "http://snomed.info/sct",
        "https://snomed.info/sct",
        "http://snomed.info/sct/",
        "urn:oid:2.16.840.1.113883.6.96",
        "snomed",
        "snomed-ct",
        "sct",
    ],
    LOINC: ["http://loinc.org", "https://loinc.org", "urn:oid:2.16.840.1.113883.6.1", "loinc"],
    RXNORM: [
        "http://www.nlm.nih.gov/research/umls/rxnorm",
        "https://www.nlm.nih.gov/research/umls/rxnorm",
        "http://nlm.nih.gov/research/umls/rxnorm",
        "urn:oid:2.16.840.1.113883.6.88",
        "rxnorm",
    ],
    ATC: ["http://www.whocc.no/atc", "https://www.whocc.no/atc", "urn:oid:2.16.840.1.113883.6.73", "atc"],
}
_SYSTEMS = {
    alias.lower().rstrip("/"): canonical
    for canonical, aliases in _SYSTEM_ALIASES.items()
    for alias in aliases
}


def normalize_system(system: str | None) -> str | None:
    """Canonical FHIR URI for a code-system spelling, or None when the system is not one we index.

    SNOMED edition/version URIs (http://snomed.info/sct/731000124108/version/...) count as SNOMED."""
    if not system:
        return None
    key = system.strip().lower().rstrip("/")
    found = _SYSTEMS.get(key)
    if found is None and key.startswith(("http://snomed.info/sct/", "https://snomed.info/sct/")):
        return SNOMED
    return found


def normalize_code(system: str, code: str) -> str:
    """The index key for a code: ICD-10-CM upper-case without the dot; ATC upper-case; others stripped."""
    code = code.strip()
    if system == ICD10CM:
        return code.replace(".", "").upper()
    if system == ATC:
        return code.upper()
    return code


_ICD10CM = re.compile(r"^[A-Z][0-9][0-9A-Z](\.?[0-9A-Z]{1,4})?$")
_LOINC = re.compile(r"^([0-9]{1,7})-([0-9])$")
_SCTID = re.compile(r"^[1-9][0-9]{5,17}$")
_RXCUI = re.compile(r"^[1-9][0-9]{0,8}$")
_ATC = re.compile(r"^[A-Z]([0-9]{2}([A-Z]([A-Z]([0-9]{2})?)?)?)?$")

# Verhoeff tables (SNOMED CT identifiers end in a Verhoeff check digit).
_D = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
]
_P = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
]


def _verhoeff_ok(digits: str) -> bool:
    c = 0
    for i, ch in enumerate(reversed(digits)):
        c = _D[c][_P[i % 8][int(ch)]]
    return c == 0


def _loinc_check_ok(body: str, check: str) -> bool:
    """LOINC mod-10 check digit: double every other digit from the right of the body, sum the digits."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d = d // 10 + d % 10
        total += d
    return (10 - total % 10) % 10 == int(check)


def code_syntax_error(system: str, code: str) -> str | None:
    """Why ``code`` is not a well-formed code of ``system`` (None when it is)."""
    if system == ICD10CM:
        return None if _ICD10CM.match(code.upper()) else f"malformed ICD-10-CM code {code!r}"
    if system == SNOMED:
        if not _SCTID.match(code):
            return f"malformed SNOMED CT id {code!r} (6-18 digits)"
        if code[-3:-1] not in ("00", "10"):
            return f"SNOMED CT id {code!r} is not a concept id (partition {code[-3:-1]})"
        return None if _verhoeff_ok(code) else f"SNOMED CT id {code!r} fails its Verhoeff check digit"
    if system == LOINC:
        m = _LOINC.match(code)
        if not m:
            return f"malformed LOINC code {code!r} (NNNNN-N)"
        return None if _loinc_check_ok(*m.groups()) else f"LOINC code {code!r} fails its mod-10 check digit"
    if system == RXNORM:
        return None if _RXCUI.match(code) else f"malformed RxNorm RxCUI {code!r}"
    if system == ATC:
        return None if _ATC.match(code) else f"malformed ATC code {code!r}"
    return f"unknown code system {system!r}"
