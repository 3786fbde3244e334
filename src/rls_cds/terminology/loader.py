"""Table rows -> validated index entries; each function reads one table and reports problems by file/line."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from rls_cds.terminology.codes import (
    ICD10CM,
    LOINC,
    RXNORM,
    SNOMED,
    code_syntax_error,
    normalize_code,
    normalize_system,
)
from rls_cds.terminology.model import DRUG_STRENGTHS, INDICATORS, ROLES, DrugIngredient, LabDef
from rls_cds.terminology.tables import SNAKE, Problems, Row, parse_bool, read_csv, split_list
from rls_cds.terminology.units import normalize_unit

CONDITION_COLUMNS = ["cause", "system", "code", "match", "qualifier", "display", "source"]
LAB_COLUMNS = ["loinc", "analyte", "cause", "display", "source"]
UNIT_COLUMNS = ["analyte", "unit", "canonical", "factor", "offset", "source"]
CLASS_COLUMNS = [
    "drug_class",
    "title",
    "role",
    "strength",
    "indicator",
    "alternative",
    "atc_groups",
    "source",
]
MED_COLUMNS = [
    "rxcui",
    "tty",
    "name",
    "ingredients",
    "role",
    "drug_class",
    "strength",
    "indicator",
    "alternative",
    "withdrawal",
    "atc",
    "brands",
    "synonyms",
    "route",
    "route_excluded",
    "source",
]
INGREDIENT_TTYS = ("IN", "PIN", "MIN")
PRODUCT_TTYS = ("SCDC", "SCD", "SBD", "SBDC", "GPCK", "BPCK", "SCDF", "SBDF", "SCDG", "SBDG")
MATCHES = ("exact", "prefix", "exclude")
ROUTE_COLUMNS = ["term", "snomed", "route", "excluded", "source", "atc_group"]
# Drug classes the rules read by name (src/rls_cds/core/causes), with the role each must have: renaming
# or dropping one in drug_classes.csv would silently switch a rule off, so it is a load error.
CLASSES_READ = {
    "gabapentinoid": "rls_treatment",
    "iron": "rls_treatment",
    "iv_iron": "rls_treatment",
    # the augmentation rule (core.causes.medications._DOPAMINERGIC)
    "dopamine_agonist": "rls_treatment",
    "levodopa": "rls_treatment",
    # drug_induced: antidepressant taper and pregnancy rules, neuropathy wording, beta-blocker advice
    "ssri": "aggravator",
    "snri": "aggravator",
    "tca": "aggravator",
    "mirtazapine": "aggravator",
    "antiemetic_d2": "aggravator",
    "beta_blocker": "aggravator",
}


@dataclass(frozen=True)
class ConditionRow:
    cause: str
    system: str
    key: str  # normalised code (ICD-10-CM without dot)
    code: str  # as written in the table
    match: str
    qualifier: str | None
    display: str
    source: str
    line: int


def _yes_no(row: Row, column: str, problems: Problems) -> bool | None:
    """A yes/no cell; None, with a problem naming the file and line, when it is neither."""
    value = parse_bool(row.get(column))
    if value is None:
        problems.add(row.file, row.line, f"{column} {row.get(column)!r} must be yes or no")
    return value


NO_ALTERNATIVE = "none"


def _ingredient_alternative(own: str | None, class_default: str | None) -> str | None:
    """An ingredient's alternative: its own, else its class's; ``none`` says the class's substitute
    does not fit this drug (meclizine for vertigo is not replaced by loratadine): name none."""
    if own and own.strip().lower() == NO_ALTERNATIVE:
        return None
    return own or class_default


def _need_source(row: Row, problems: Problems) -> bool:
    if not row.get("source"):
        problems.add(row.file, row.line, "source is empty: every row must name its source")
        return False
    return True


def _well_formed(row: Row, system: str, code: str, problems: Problems) -> bool:
    """Report against the row why ``code`` is not a well-formed ``system`` code; True when it is."""
    error = code_syntax_error(system, code)
    if error:
        problems.add(row.file, row.line, error)
    return not error


def _all_well_formed(row: Row, system: str, codes: list[str], problems: Problems) -> bool:
    # A list, not a generator: every malformed code is reported, not only the first.
    return all([_well_formed(row, system, code, problems) for code in codes])


def load_conditions(path: Path, text: str, causes: set[str], problems: Problems) -> list[ConditionRow]:
    out: list[ConditionRow] = []
    seen: dict[tuple[str, str, str], ConditionRow] = {}
    for row in read_csv(path, text, CONDITION_COLUMNS, problems):
        cr = _condition_row(row, causes, problems)
        if cr is None:
            continue
        prev = seen.get((cr.cause, cr.system, cr.key))
        if prev is not None:
            same = (prev.match, prev.qualifier) == (cr.match, cr.qualifier)
            what = "duplicate of" if same else "conflicts with"
            problems.add(row.file, row.line, f"{cr.code} for cause {cr.cause!r} {what} line {prev.line}")
            continue
        seen[(cr.cause, cr.system, cr.key)] = cr
        out.append(cr)
    return out


def _condition_row(row: Row, causes: set[str], problems: Problems) -> ConditionRow | None:
    ok = _need_source(row, problems)
    cause, match, qualifier = row.get("cause"), row.get("match") or "exact", row.get("qualifier")
    system = normalize_system(row.get("system"))
    if cause not in causes:
        problems.add(row.file, row.line, f"unknown cause id {cause!r} (not defined in causes.yaml)")
        ok = False
    if system not in (ICD10CM, SNOMED):
        problems.add(row.file, row.line, f"system {row.get('system')!r} must be ICD-10-CM or SNOMED CT")
        return None
    ok &= _well_formed(row, system, row.get("code"), problems)
    if match not in MATCHES:
        problems.add(row.file, row.line, f"match {match!r} must be one of {', '.join(MATCHES)}")
        ok = False
    elif match != "exact" and system != ICD10CM:
        problems.add(row.file, row.line, f"match {match!r} (code family) is only defined for ICD-10-CM")
        ok = False
    if qualifier and not SNAKE.match(qualifier):
        problems.add(row.file, row.line, f"qualifier {qualifier!r} must be snake_case")
        ok = False
    if not ok:
        return None
    code = row.get("code")
    return ConditionRow(
        cause,
        system,
        normalize_code(system, code),
        code,
        match,
        qualifier or None,
        row.get("display"),
        row.get("source"),
        row.line,
    )


@dataclass(frozen=True)
class UnitRow:
    analyte: str
    unit: str
    factor: float
    offset: float


def load_units(
    path: Path, text: str, problems: Problems
) -> tuple[dict[tuple[str, str], tuple[float, float]], dict[str, str]]:
    """(analyte, normalised unit) -> (factor, offset), and analyte -> canonical unit."""
    conversions: dict[tuple[str, str], tuple[float, float, int]] = {}
    canonical: dict[str, tuple[str, int]] = {}
    for row in read_csv(path, text, UNIT_COLUMNS, problems):
        parsed = _unit_row(row, problems)
        if parsed is None:
            continue
        unit_row, is_canonical = parsed
        key = (unit_row.analyte, normalize_unit(unit_row.unit))
        prev = conversions.get(key)
        if prev is not None and not (
            math.isclose(prev[0], unit_row.factor) and math.isclose(prev[1], unit_row.offset)
        ):
            problems.add(
                row.file,
                row.line,
                f"unit {unit_row.unit!r} of {unit_row.analyte} conflicts with line {prev[2]} "
                "(same spelling after normalising, other factor)",
            )
            continue
        conversions[key] = (unit_row.factor, unit_row.offset, row.line)
        if is_canonical:
            if unit_row.analyte in canonical:
                first = canonical[unit_row.analyte][1]
                problems.add(
                    row.file, row.line, f"{unit_row.analyte}: second canonical unit (see line {first})"
                )
                continue
            canonical[unit_row.analyte] = (unit_row.unit, row.line)
    analytes = {a for a, _ in conversions}
    for analyte in sorted(analytes - set(canonical)):
        line = min(v[2] for k, v in conversions.items() if k[0] == analyte)
        problems.add(
            path.name, line, f"analyte {analyte!r} has no canonical unit (one row needs canonical=yes)"
        )
    return {k: (v[0], v[1]) for k, v in conversions.items()}, {a: u for a, (u, _) in canonical.items()}


def _unit_row(row: Row, problems: Problems) -> tuple[UnitRow, bool] | None:
    ok = _need_source(row, problems)
    analyte = row.get("analyte")
    if not SNAKE.match(analyte):
        problems.add(row.file, row.line, f"analyte {analyte!r} must be snake_case")
        ok = False
    factor = _float(row.get("factor"))
    offset = _float(row.get("offset") or "0")
    if factor is None or factor <= 0:
        problems.add(row.file, row.line, f"factor {row.get('factor')!r} must be a finite number > 0")
        ok = False
    if offset is None:
        problems.add(row.file, row.line, f"offset {row.get('offset')!r} must be a finite number (or empty)")
        ok = False
    is_canonical = _yes_no(row, "canonical", problems)
    if is_canonical is None:
        ok = False
    elif is_canonical and ok and (factor != 1 or offset != 0):
        problems.add(row.file, row.line, "the canonical unit must have factor 1 and no offset")
        ok = False
    if not ok:
        return None
    return UnitRow(analyte, row.get("unit"), float(factor), float(offset)), bool(is_canonical)


def _float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def load_labs(
    path: Path, text: str, causes: set[str], canonical: dict[str, str], problems: Problems
) -> dict[str, LabDef]:
    labs: dict[str, tuple[LabDef, int]] = {}
    for row in read_csv(path, text, LAB_COLUMNS, problems):
        ok = _need_source(row, problems)
        loinc, analyte, cause = row.get("loinc"), row.get("analyte"), row.get("cause")
        ok &= _well_formed(row, LOINC, loinc, problems)
        if analyte not in canonical:
            problems.add(row.file, row.line, f"analyte {analyte!r} has no units in units.csv (unknown unit)")
            ok = False
        if cause not in causes:
            problems.add(row.file, row.line, f"unknown cause id {cause!r} (not defined in causes.yaml)")
            ok = False
        if not ok:
            continue
        if loinc in labs:
            prev, prev_line = labs[loinc]
            what = "duplicate of" if prev.analyte == analyte else f"conflicts with (analyte {prev.analyte!r})"
            problems.add(row.file, row.line, f"LOINC {loinc} {what} line {prev_line}")
            continue
        labs[loinc] = (
            LabDef(loinc, analyte, canonical[analyte], row.get("display"), cause, row.get("source")),
            row.line,
        )
    return {k: v for k, (v, _) in labs.items()}


@dataclass(frozen=True)
class DrugClass:
    id: str
    title: str
    role: str
    strength: str
    indicator: str
    alternative: str | None
    atc_groups: tuple[str, ...]
    source: str


def load_drug_classes(path: Path, text: str, problems: Problems) -> dict[str, DrugClass]:
    from rls_cds.terminology.codes import ATC

    classes: dict[str, DrugClass] = {}
    for row in read_csv(path, text, CLASS_COLUMNS, problems):
        ok = _need_source(row, problems)
        cid = row.get("drug_class")
        ok &= _vocab(row, "role", ROLES, problems) & _vocab(row, "strength", DRUG_STRENGTHS, problems)
        ok &= _vocab(row, "indicator", INDICATORS, problems)
        if not SNAKE.match(cid):
            problems.add(row.file, row.line, f"drug_class {cid!r} must be snake_case")
            ok = False
        groups = split_list(row.get("atc_groups"))
        ok &= _all_well_formed(row, ATC, groups, problems)
        if cid in classes:
            problems.add(row.file, row.line, f"drug_class {cid!r} is defined twice")
            ok = False
        if ok:
            classes[cid] = DrugClass(
                cid,
                row.get("title"),
                row.get("role"),
                row.get("strength"),
                row.get("indicator"),
                row.get("alternative") or None,
                tuple(groups),
                row.get("source"),
            )
    _check_classes_read(path, classes, problems)
    return classes


def _check_classes_read(path: Path, classes: dict[str, DrugClass], problems: Problems) -> None:
    for cid, role in CLASSES_READ.items():
        cls = classes.get(cid)
        if cls is None:
            problems.add(path.name, 1, f"drug_class {cid!r} is read by the rules and must be defined")
        elif cls.role != role:
            problems.add(
                path.name, 1, f"drug_class {cid!r} is read by the rules as {role!r}, not {cls.role!r}"
            )


def _vocab(
    row: Row, column: str, allowed: tuple[str, ...], problems: Problems, optional: bool = False
) -> bool:
    value = row.get(column)
    if (optional and not value) or value in allowed:
        return True
    problems.add(row.file, row.line, f"{column} {value!r} must be one of {', '.join(allowed)}")
    return False


@dataclass(frozen=True)
class ProductRow:
    rxcui: str
    tty: str
    name: str
    ingredient_names: tuple[str, ...]
    route: str
    route_excluded: bool
    source: str
    line: int


@dataclass
class Medications:
    ingredients: list[DrugIngredient]
    products: list[ProductRow]
    synonyms: dict[str, list[str]]  # extra text terms (lower-case) -> ingredient names


def load_medications(path: Path, text: str, classes: dict[str, DrugClass], problems: Problems) -> Medications:
    rows = read_csv(path, text, MED_COLUMNS, problems)
    by_name: dict[str, DrugIngredient] = {}
    name_line: dict[str, int] = {}
    rxcui_line: dict[str, int] = {}
    synonyms: dict[str, list[str]] = {}
    pins: list[tuple[Row, DrugIngredient]] = []
    for row in rows:
        if row.get("tty") not in INGREDIENT_TTYS:
            continue
        ing = _ingredient(row, classes, problems)
        if ing is None or not _unique(row, ing.rxcui, ing.name, rxcui_line, name_line, problems):
            continue
        by_name[ing.name.lower()] = ing
        synonyms.update({s.lower(): [ing.name] for s in split_list(row.get("synonyms"))})
        if ing.tty == "PIN":
            pins.append((row, ing))
    for row, pin in pins:
        base = by_name.get(row.get("ingredients").lower())
        if base is None or base.tty != "IN":
            problems.add(
                row.file,
                row.line,
                f"PIN {pin.name!r} must name its IN in 'ingredients' (got {row.get('ingredients')!r})",
            )
            continue
        by_name[pin.name.lower()] = _with_base(row, pin, base)
    products = [
        p
        for row in rows
        if row.get("tty") not in INGREDIENT_TTYS
        if (p := _product(row, by_name, rxcui_line, problems)) is not None
    ]
    return Medications(list(by_name.values()), products, synonyms)


def _with_base(row: Row, pin: DrugIngredient, base: DrugIngredient) -> DrugIngredient:
    """A PIN (a salt: diphenhydramine hydrochloride) is its IN: what its row leaves empty comes from the
    IN's row, not from the class, so an IN-level alternative cannot be lost on the salt form."""
    from dataclasses import replace

    inherited = {
        col: getattr(base, col) for col in ("strength", "indicator", "alternative") if not row.get(col)
    }
    return replace(pin, base_rxcui=base.rxcui, **inherited)


def _unique(row: Row, rxcui: str, name: str, rxcui_line: dict, name_line: dict, problems: Problems) -> bool:
    ok = True
    if rxcui and rxcui in rxcui_line:
        problems.add(row.file, row.line, f"RxCUI {rxcui} already defined on line {rxcui_line[rxcui]}")
        ok = False
    if name.lower() in name_line:
        problems.add(
            row.file, row.line, f"ingredient name {name!r} already defined on line {name_line[name.lower()]}"
        )
        ok = False
    if ok:
        if rxcui:
            rxcui_line[rxcui] = row.line
        name_line[name.lower()] = row.line
    return ok


def _ingredient(row: Row, classes: dict[str, DrugClass], problems: Problems) -> DrugIngredient | None:
    from rls_cds.terminology.codes import ATC

    ok = _need_source(row, problems)
    rxcui, tty, name = row.get("rxcui"), row.get("tty"), row.get("name")
    if rxcui:
        ok &= _well_formed(row, RXNORM, rxcui, problems)
    elif tty != "IN":
        problems.add(
            row.file, row.line, f"{tty} row needs an rxcui (only an IN may leave it empty, matched by name)"
        )
        ok = False
    if not name:
        problems.add(row.file, row.line, "name is empty")
        ok = False
    cls = classes.get(row.get("drug_class"))
    if cls is None:
        problems.add(
            row.file, row.line, f"unknown drug_class {row.get('drug_class')!r} (not in drug_classes.csv)"
        )
        return None
    ok &= _vocab(row, "role", ROLES, problems) & _vocab(
        row, "strength", DRUG_STRENGTHS, problems, optional=True
    )
    ok &= _vocab(row, "indicator", INDICATORS, problems, optional=True)
    if row.get("role") in ROLES and row.get("role") != cls.role:
        # The safety rules live in the classes (gabapentinoids are treatments, bupropion the alternative):
        # an ingredient row cannot quietly turn a treatment into an aggravator.
        problems.add(
            row.file, row.line, f"role {row.get('role')!r} contradicts class {cls.id!r} ({cls.role!r})"
        )
        ok = False
    withdrawal = _yes_no(row, "withdrawal", problems)
    if withdrawal is None:
        ok = False
    atc = split_list(row.get("atc"))
    ok &= _all_well_formed(row, ATC, atc, problems)
    if not ok:
        return None
    return DrugIngredient(
        rxcui=rxcui,
        name=name,
        role=row.get("role"),
        drug_class=cls.id,
        strength=row.get("strength") or cls.strength,
        indicator=row.get("indicator") or cls.indicator,
        alternative=_ingredient_alternative(row.get("alternative"), cls.alternative),
        brands=tuple(split_list(row.get("brands"))),
        tty=tty,
        base_rxcui=rxcui,
        withdrawal=bool(withdrawal) or row.get("role") == "withdrawal",
        atc=tuple(atc),
        source=row.get("source"),
    )


def _product(
    row: Row, by_name: dict[str, DrugIngredient], rxcui_line: dict, problems: Problems
) -> ProductRow | None:
    ok = _need_source(row, problems)
    rxcui, tty = row.get("rxcui"), row.get("tty")
    if tty not in PRODUCT_TTYS:
        problems.add(
            row.file, row.line, f"tty {tty!r} must be one of {', '.join(INGREDIENT_TTYS + PRODUCT_TTYS)}"
        )
        return None
    ok &= _well_formed(row, RXNORM, rxcui, problems)
    if row.get("role") or row.get("drug_class"):
        problems.add(
            row.file,
            row.line,
            "product rows take role and drug_class from their ingredients: leave them empty",
        )
        ok = False
    names = split_list(row.get("ingredients"))
    if not names:
        problems.add(row.file, row.line, "product row needs its ingredient name(s) in 'ingredients'")
        ok = False
    for n in names:
        if n.lower() not in by_name:
            problems.add(row.file, row.line, f"ingredient {n!r} is not an IN/PIN row of this table")
            ok = False
    excluded = _yes_no(row, "route_excluded", problems)
    if excluded is None:
        ok = False
    if ok and rxcui in rxcui_line:
        problems.add(row.file, row.line, f"RxCUI {rxcui} already defined on line {rxcui_line[rxcui]}")
        ok = False
    if not ok:
        return None
    rxcui_line[rxcui] = row.line
    return ProductRow(
        rxcui,
        tty,
        row.get("name"),
        tuple(n.lower() for n in names),
        row.get("route"),
        bool(excluded),
        row.get("source"),
        row.line,
    )


def load_routes(path: Path, text: str, problems: Problems) -> dict[str, tuple[str, bool]]:
    """Route words found in product text, SNOMED CT route codes (keyed 'snomed:<code>') and ATC groups
    whose every substance code is a local preparation (keyed 'atc:<group>'), -> (route, excluded)."""
    routes: dict[str, tuple[str, bool, int]] = {}
    for row in read_csv(path, text, ROUTE_COLUMNS, problems):
        key = _route_key(row, problems)
        route = row.get("route")
        ok = _need_source(row, problems) and key is not None
        if not SNAKE.match(route):
            problems.add(row.file, row.line, f"route {route!r} must be snake_case")
            ok = False
        excluded = _yes_no(row, "excluded", problems)
        if excluded is None:
            ok = False
        if ok and key in routes:
            problems.add(row.file, row.line, f"{key!r} already defined on line {routes[key][2]}")
            ok = False
        if ok:
            routes[key] = (route, bool(excluded), row.line)
    by_route: dict[str, bool] = {}
    for key, (route, excluded, line) in routes.items():
        if by_route.setdefault(route, excluded) != excluded:
            problems.add(
                path.name, line, f"route {route!r} is excluded on one row and not on another ({key!r})"
            )
    return {key: (route, excluded) for key, (route, excluded, _) in routes.items()}


def _route_key(row: Row, problems: Problems) -> str | None:
    from rls_cds.terminology.codes import ATC

    term, snomed = " ".join(row.get("term").lower().split()), row.get("snomed")
    group = row.get("atc_group").upper()
    if sum(map(bool, (term, snomed, group))) != 1:
        problems.add(row.file, row.line, "give exactly one of a term, a snomed route code or an atc_group")
        return None
    if snomed:
        if not _well_formed(row, SNOMED, snomed, problems):
            return None
        return f"snomed:{snomed}"
    if group:
        return f"atc:{group}" if _well_formed(row, ATC, group, problems) else None
    return term


def check_product_routes(
    path: Path, products: list[ProductRow], routes: dict[str, tuple[str, bool]], problems: Problems
):
    """A product's route must be a route of routes.csv, and its route_excluded must agree with it."""
    excluded_by_route = {route: excluded for route, excluded in routes.values()}
    for p in products:
        if not p.route:
            continue
        if p.route not in excluded_by_route:
            problems.add(path.name, p.line, f"route {p.route!r} is not a route of routes.csv")
        elif excluded_by_route[p.route] != p.route_excluded:
            problems.add(path.name, p.line, f"route_excluded contradicts routes.csv for route {p.route!r}")
