"""The loaded terminology: O(1) lookups by (system, code); ICD-10-CM families via the code's prefixes."""

from __future__ import annotations

import hashlib
import math
import re
from collections import defaultdict
from pathlib import Path

from rls_cds.terminology.causes import load_causes
from rls_cds.terminology.codes import ATC, ICD10CM, LOINC, RXNORM, SNOMED, normalize_code, normalize_system
from rls_cds.terminology.errors import TerminologyError
from rls_cds.terminology.loader import (
    ConditionRow,
    DrugClass,
    Medications,
    check_product_routes,
    load_conditions,
    load_drug_classes,
    load_labs,
    load_medications,
    load_routes,
    load_units,
)
from rls_cds.terminology.model import CauseDef, ConditionMatch, DrugConcept, DrugIngredient, LabDef
from rls_cds.terminology.tables import Problems
from rls_cds.terminology.units import normalize_unit

FILES = (
    "causes.yaml",
    "conditions.csv",
    "labs.csv",
    "units.csv",
    "drug_classes.csv",
    "medications.csv",
    "routes.csv",
)
_ICD_MIN = 3  # ICD-10-CM categories have three characters


def load_terminology(path: str | Path) -> Terminology:
    """Read and validate every table under ``path``; raise TerminologyError naming the first bad file/line."""
    root = Path(path)
    texts: dict[str, str] = {}
    problems = Problems()
    digest = hashlib.sha256()
    for name in FILES:
        file = root / name
        try:
            raw = file.read_bytes()
        except OSError as exc:
            problems.add(name, 0, f"cannot read {file}: {exc.strerror or exc}")
            continue
        digest.update(name.encode() + b"\0" + raw + b"\0")
        try:
            texts[name] = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            problems.add(name, raw[: exc.start].count(b"\n") + 1, "not UTF-8 text")
    if problems.items:
        raise TerminologyError.from_problems(problems.items)
    units, canonical = load_units(root / "units.csv", texts["units.csv"], problems)
    causes = load_causes(root / "causes.yaml", texts["causes.yaml"], set(canonical), problems)
    cause_ids = set(causes) or _declared_cause_ids(texts["causes.yaml"])
    conditions = load_conditions(root / "conditions.csv", texts["conditions.csv"], cause_ids, problems)
    labs = load_labs(root / "labs.csv", texts["labs.csv"], cause_ids, canonical, problems)
    classes = load_drug_classes(root / "drug_classes.csv", texts["drug_classes.csv"], problems)
    meds = load_medications(root / "medications.csv", texts["medications.csv"], classes, problems)
    routes = load_routes(root / "routes.csv", texts["routes.csv"], problems)
    check_product_routes(root / "medications.csv", meds.products, routes, problems)
    if problems.items:
        raise TerminologyError.from_problems(problems.items)
    return Terminology(
        digest.hexdigest()[:16], causes, conditions, labs, units, canonical, classes, meds, routes
    )


def _declared_cause_ids(text: str) -> set[str]:
    """Cause ids when causes.yaml has errors, so table checks do not cascade into 'unknown cause'."""
    return set(re.findall(r"^  ([a-z][a-z0-9_]*):", text, flags=re.MULTILINE))


class Terminology:
    """Immutable after construction; share one per process (load once at start-up)."""

    def __init__(
        self,
        version: str,
        causes: dict[str, CauseDef],
        conditions: list[ConditionRow],
        labs: dict[str, LabDef],
        units: dict[tuple[str, str], tuple[float, float]],
        canonical_units: dict[str, str],
        drug_classes: dict[str, DrugClass],
        meds: Medications,
        routes: dict[str, tuple[str, bool]] | None = None,
    ) -> None:
        self.version = version
        self.causes = causes
        self.condition_rows = conditions
        self.labs = labs
        self.canonical_units = canonical_units
        self.drug_classes = drug_classes
        self.ingredients = meds.ingredients
        self.products = meds.products
        self._units = units
        # Each row's ConditionMatch is built once: lookups only walk dicts.
        self._conditions: dict[tuple[str, str], list[tuple[ConditionRow, ConditionMatch]]] = defaultdict(list)
        for row in conditions:
            self._conditions[(row.system, row.key)].append((row, _match(row)))
        self._conditions = dict(self._conditions)
        self._build_routes(routes or {})
        self._build_drugs(meds)

    def _build_routes(self, routes: dict[str, tuple[str, bool]]) -> None:
        self._routes = {k: v for k, v in routes.items() if ":" not in k}
        self._route_codes = {
            k.removeprefix("snomed:"): v for k, v in routes.items() if k.startswith("snomed:")
        }
        self._route_atc = {k.removeprefix("atc:"): v for k, v in routes.items() if k.startswith("atc:")}
        pattern = "|".join(_term_pattern(t) for t in sorted(self._routes, key=len, reverse=True))
        boundary = rf"(?<![A-Za-z0-9])(?:{pattern})(?![A-Za-z0-9])"
        self._route_re = re.compile(boundary, re.IGNORECASE) if pattern else None

    # ---- conditions -------------------------------------------------------------------------------------

    def condition_matches(self, system: str | None, code: str | None) -> list[ConditionMatch]:
        """Causes a coded condition supports. ICD-10-CM: exact rows match the code itself, prefix rows the
        code and its children; per cause the most specific row wins and an 'exclude' row yields nothing."""
        s = normalize_system(system)
        if s not in (ICD10CM, SNOMED) or not code:
            return []
        key = normalize_code(s, code)
        if s == SNOMED:
            return [cm for row, cm in self._conditions.get((s, key), ()) if row.match != "exclude"]
        decided: dict[str, tuple[ConditionRow, ConditionMatch]] = {}
        for n in range(len(key), _ICD_MIN - 1, -1):
            for row, cm in self._conditions.get((s, key[:n]), ()):
                if row.cause in decided or (row.match == "exact" and n != len(key)):
                    continue
                decided[row.cause] = (row, cm)
        return [cm for row, cm in decided.values() if row.match != "exclude"]

    # ---- labs -------------------------------------------------------------------------------------------

    def lab(self, system: str | None, code: str | None) -> LabDef | None:
        if normalize_system(system) != LOINC or not code:
            return None
        return self.labs.get(code.strip())

    def convert(self, analyte: str, value: float | int | None, unit: str | None) -> float | None:
        """``value`` in ``unit`` as the analyte's canonical unit; None for an unknown unit or value."""
        if value is None or isinstance(value, bool):
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        if not math.isfinite(number):
            return None
        conversion = self._units.get((analyte, normalize_unit(unit)))
        if conversion is None:
            return None
        factor, offset = conversion
        return number * factor + offset

    def all_lab_codes(self) -> list[tuple[str, str]]:
        return [(LOINC, code) for code in self.labs]

    def lab_codes_for(self, analytes: set[str] | frozenset[str]) -> list[str]:
        return [code for code, lab in self.labs.items() if lab.analyte in analytes]

    # ---- medications ------------------------------------------------------------------------------------

    def _build_drugs(self, meds: Medications) -> None:
        by_name = {i.name.lower(): i for i in meds.ingredients}
        self._ingredients = {i.rxcui: i for i in meds.ingredients if i.rxcui}
        self._rxnorm: dict[str, DrugConcept] = {}
        for ing in meds.ingredients:
            if ing.rxcui:
                self._rxnorm[ing.rxcui] = DrugConcept(
                    ing.rxcui, RXNORM, ing.name, (ing,), False, ing.tty, "", ing.source
                )
        for p in meds.products:
            ingredients = tuple(by_name[n] for n in p.ingredient_names)
            self._rxnorm[p.rxcui] = DrugConcept(
                p.rxcui, RXNORM, p.name, ingredients, p.route_excluded, p.tty, p.route, p.source
            )
        by_atc: dict[str, list[DrugIngredient]] = defaultdict(list)
        for ing in meds.ingredients:
            for code in ing.atc:
                by_atc[code].append(ing)
        self._atc = {code: self._atc_concept(code, ings) for code, ings in by_atc.items()}
        terms: dict[tuple[str, ...], list[DrugIngredient]] = defaultdict(list)
        for ing in meds.ingredients:
            for term in (ing.name, *ing.brands):
                key = _tokens(term)
                if ing not in terms[key]:
                    terms[key].append(ing)
        for term, names in meds.synonyms.items():
            key = _tokens(term)
            terms[key].extend(by_name[n.lower()] for n in names if by_name[n.lower()] not in terms[key])
        self._terms = {t: tuple(v) for t, v in terms.items() if t}
        self._longest_term = max((len(t) for t in self._terms), default=0)

    def _atc_concept(self, code: str, ings: list[DrugIngredient]) -> DrugConcept:
        """An ATC substance code names its use, and some groups are local use only (D04AA32 is topical
        diphenhydramine, S01ED01 ophthalmic timolol): routes.csv lists those groups."""
        group = next((g for g in self._route_atc if code.startswith(g)), None)
        route, excluded = self._route_atc[group] if group else ("", False)
        return DrugConcept(code, ATC, " / ".join(i.name for i in ings), tuple(ings), excluded, "ATC", route)

    def drug_by_code(self, system: str | None, code: str | None) -> DrugConcept | None:
        s = normalize_system(system)
        if not code:
            return None
        if s == RXNORM:
            return self._rxnorm.get(code.strip())
        if s == ATC:
            return self._atc.get(normalize_code(ATC, code))
        return None

    def drug_by_text(self, text: str | None) -> list[DrugIngredient]:
        """Ingredients whose generic, brand or synonym name occurs as whole words in ``text``
        (lower certainty than a code: callers label such evidence as matched by text).

        Token lookup, longest name first at each position: "lithium carbonate" before "lithium",
        "dilithium" never matches "lithium"."""
        if not text:
            return []
        words = _tokens(text)
        found: list[DrugIngredient] = []
        i = 0
        while i < len(words):
            for n in range(min(self._longest_term, len(words) - i), 0, -1):
                hit = self._terms.get(words[i : i + n])
                if hit is not None:
                    found.extend(ing for ing in hit if ing not in found)
                    i += n
                    break
            else:
                i += 1
        return found

    def route_of_text(self, text: str | None) -> tuple[str, bool] | None:
        """(route, excluded) named by a product's text ("... Topical Cream" -> ('topical', True)); an excluded
        route wins over a systemic one in the same text. None when the text names no route of routes.csv."""
        if not text or self._route_re is None:
            return None
        found = None
        for m in self._route_re.finditer(text):
            route = self._routes[_WS.sub(" ", m.group(0).lower())]
            if route[1]:
                return route
            found = found or route
        return found

    def route_of_code(self, system: str | None, code: str | None) -> tuple[str, bool] | None:
        """(route, excluded) of a SNOMED CT route code (MedicationRequest.dosageInstruction.route)."""
        if normalize_system(system) != SNOMED or not code:
            return None
        return self._route_codes.get(code.strip())

    def route_excluded_text(self, text: str | None) -> bool:
        """True when the text names a topical/ophthalmic/otic product: no systemic exposure, never flag."""
        route = self.route_of_text(text)
        return bool(route and route[1])

    def ingredient(self, rxcui: str | None) -> DrugIngredient | None:
        return self._ingredients.get(rxcui.strip()) if rxcui else None

    def ingredients_of_class(self, drug_class: str) -> list[DrugIngredient]:
        return [i for i in self.ingredients if i.drug_class == drug_class]


_WS = re.compile(r"\s+")
_WORD = re.compile(r"[a-z0-9]+")


def _tokens(text: str) -> tuple[str, ...]:
    """Lower-case alphanumeric words: names match on whole words whatever the spacing or punctuation."""
    return tuple(_WORD.findall(text.lower()))


def _term_pattern(term: str) -> str:
    return r"\s+".join(re.escape(part) for part in term.split())


def _match(row: ConditionRow) -> ConditionMatch:
    code = row.code.upper() if row.system == ICD10CM else row.code
    return ConditionMatch(row.cause, row.qualifier, row.display, row.source, code, row.match)
