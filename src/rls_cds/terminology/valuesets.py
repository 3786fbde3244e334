"""Codes per cause and per drug class, and their FHIR R4 ValueSets (`rls-cds terminology export --fhir`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rls_cds.terminology.codes import ATC, ICD10CM, LOINC, RXNORM, SNOMED
from rls_cds.terminology.index import Terminology
from rls_cds.terminology.model import DrugIngredient

DEFAULT_CANONICAL_BASE = "http://rls-cds.local/fhir"
PUBLICATION_STATUS = ("draft", "active", "retired", "unknown")
_ROLE_CAUSE = {
    "aggravator": "drug_induced",
    "withdrawal": "drug_withdrawal",
    "caffeine": "lifestyle",
    "alcohol": "lifestyle",
}


@dataclass
class CodeSet:
    """Codes of one cause or drug class, grouped by system: (code, display) lists, ICD-10-CM families and
    exclusions kept apart because a ValueSet expresses them as filters."""

    include: dict[str, dict[str, str]] = field(default_factory=dict)
    families: dict[str, str] = field(default_factory=dict)
    exclude: dict[str, str] = field(default_factory=dict)

    def add(self, system: str, code: str, display: str) -> None:
        self.include.setdefault(system, {}).setdefault(code, display)

    def counts(self) -> dict[str, int]:
        return {
            "icd10cm": len(self.include.get(ICD10CM, {})) + len(self.families),
            "snomed": len(self.include.get(SNOMED, {})),
            "loinc": len(self.include.get(LOINC, {})),
            "rxnorm": len(self.include.get(RXNORM, {})),
            "excluded": len(self.exclude),
        }

    def __bool__(self) -> bool:
        return bool(self.include or self.families)


def cause_codes(t: Terminology, cause: str) -> CodeSet:
    cs = CodeSet()
    for row in t.condition_rows:
        if row.cause != cause:
            continue
        if row.match == "exclude":
            cs.exclude[row.code.upper()] = row.display
        elif row.match == "prefix":
            cs.families[row.code.upper()] = row.display
        else:
            cs.add(row.system, row.code.upper() if row.system == ICD10CM else row.code, row.display)
    cdef = t.causes.get(cause)
    analytes = set(cdef.lookback_days) if cdef else set()
    for code, lab in t.labs.items():
        if lab.cause == cause or lab.analyte in analytes:
            cs.add(LOINC, code, lab.display)
    members = [
        i
        for i in t.ingredients
        if _ROLE_CAUSE.get(i.role) == cause or (cause == "drug_withdrawal" and i.withdrawal)
    ]
    _add_drugs(t, cs, members)
    return cs


def class_codes(t: Terminology, drug_class: str) -> CodeSet:
    cs = CodeSet()
    _add_drugs(t, cs, t.ingredients_of_class(drug_class))
    return cs


def _add_drugs(t: Terminology, cs: CodeSet, members: list[DrugIngredient]) -> None:
    names = {i.name.lower() for i in members}
    for ing in members:
        if ing.rxcui:
            cs.add(RXNORM, ing.rxcui, ing.name)
        for code in ing.atc:
            concept = t.drug_by_code(ATC, code)
            # Like route-excluded products: a local-use code (D04AA32 topical diphenhydramine, S01ED01
            # timolol eye drops) is never evidence.
            if len(code) == 7 and not (concept is not None and concept.route_excluded):
                cs.add(ATC, code, ing.name)
    for product in t.products:
        if names.intersection(product.ingredient_names) and not product.route_excluded:
            cs.add(RXNORM, product.rxcui, product.name)


def valueset(
    t: Terminology, kind: str, key: str, title: str, description: str, cs: CodeSet, base: str
) -> dict:
    """A FHIR R4 ValueSet (plain JSON dict) for one cause ('cause') or drug class ('class')."""
    vid = f"rls-{kind}-{key}".replace("_", "-")
    include: list[dict] = []
    for system, concepts in cs.include.items():
        include.append(
            {"system": system, "concept": [{"code": c, "display": d} for c, d in concepts.items()]}
        )
    for code in cs.families:
        include.append({"system": ICD10CM, "filter": [{"property": "concept", "op": "is-a", "value": code}]})
    compose: dict = {"include": include}
    if cs.exclude:
        compose["exclude"] = [
            {"system": ICD10CM, "filter": [{"property": "concept", "op": "is-a", "value": code}]}
            for code in cs.exclude
        ]
    return {
        "resourceType": "ValueSet",
        "id": vid,
        "url": f"{base.rstrip('/')}/ValueSet/{vid}",
        "version": t.version,
        "name": _computable_name(vid),
        "title": title,
        "status": "active",
        "experimental": False,
        "publisher": "rls-cds",
        "description": description,
        "compose": compose,
    }


def _computable_name(vid: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]", vid) if part)


def all_valuesets(t: Terminology, base: str = DEFAULT_CANONICAL_BASE) -> tuple[list[dict], list[str]]:
    """ValueSets for every cause and drug class with codes, and the keys skipped for having none."""
    out: list[dict] = []
    skipped: list[str] = []
    for cid, cdef in t.causes.items():
        cs = cause_codes(t, cid)
        if not cs:
            skipped.append(f"cause {cid}")
            continue
        desc = f"Codes that count as evidence for the RLS cause '{cid}' ({cdef.title})."
        desc += f" Reference: {cdef.reference_label}."
        out.append(valueset(t, "cause", cid, f"RLS cause: {cdef.title}", desc, cs, base))
    for key, cls in t.drug_classes.items():
        cs = class_codes(t, key)
        if not cs:
            skipped.append(f"class {key}")
            continue
        desc = f"RxNorm ingredients and products of the drug class '{key}' (role {cls.role})."
        desc += f" Source: {cls.source}."
        out.append(valueset(t, "class", key, cls.title, desc, cs, base))
    return out, skipped


def validate_valueset(resource: dict) -> None:
    """Raise if ``resource`` is not a valid FHIR ValueSet (fhir.resources R4B model, R4-compatible)."""
    from fhir.resources.R4B.valueset import ValueSet

    ValueSet.model_validate(resource)
    # fhir.resources checks structure and datatypes, not required bindings: check the one we set.
    if resource.get("status") not in PUBLICATION_STATUS:
        raise ValueError(
            f"ValueSet.status {resource.get('status')!r} is not one of {', '.join(PUBLICATION_STATUS)}"
        )
