"""`rls-cds terminology check|export`: validate the tables, print per-cause counts; export FHIR ValueSets."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("terminology", help="validate the terminology tables or export them as FHIR ValueSets")
    actions = p.add_subparsers(dest="terminology_command", metavar="ACTION")
    actions.required = True
    check = actions.add_parser(
        "check", help="validate every table; print per-cause code counts and all problems"
    )
    check.add_argument(
        "--path", type=Path, default=None, help="terminology directory (default: RLS_TERMINOLOGY_DIR)"
    )
    check.set_defaults(func=run_check)
    export = actions.add_parser("export", help="write one FHIR R4 ValueSet per cause and drug class")
    export.add_argument(
        "--fhir", type=Path, required=True, metavar="OUTDIR", help="directory for ValueSet-*.json"
    )
    export.add_argument(
        "--path", type=Path, default=None, help="terminology directory (default: RLS_TERMINOLOGY_DIR)"
    )
    export.add_argument("--canonical-base", default=None, help="base of the ValueSet canonical URLs")
    export.set_defaults(func=run_export)


def _path(args) -> Path:
    if args.path is not None:
        return args.path
    from rls_cds.settings import get_settings

    return get_settings().terminology_dir


def _load(path: Path):
    """(terminology, seconds) or (None, seconds) after printing every problem to stderr."""
    from rls_cds.terminology import TerminologyError, load_terminology

    started = time.perf_counter()
    try:
        t = load_terminology(path)
    except TerminologyError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) in {path}", file=sys.stderr)
        return None, time.perf_counter() - started
    return t, time.perf_counter() - started


def run_check(args) -> int:
    from rls_cds.terminology.valuesets import cause_codes

    path = _path(args)
    t, seconds = _load(path)
    if t is None:
        return 1
    header = (
        f"{'cause':<24}{'strength':<15}{'ICD-10-CM':>10}{'SNOMED':>8}{'LOINC':>7}{'RxNorm':>8}{'excl.':>7}"
    )
    print(header)
    print("-" * len(header))
    totals = dict.fromkeys(("icd10cm", "snomed", "loinc", "rxnorm", "excluded"), 0)
    for cid, cause in t.causes.items():
        counts = cause_codes(t, cid).counts()
        for k, v in counts.items():
            totals[k] += v
        print(
            f"{cid:<24}{cause.strength:<15}{counts['icd10cm']:>10}{counts['snomed']:>8}"
            f"{counts['loinc']:>7}{counts['rxnorm']:>8}{counts['excluded']:>7}"
        )
    print("-" * len(header))
    print(
        f"{'total':<39}{totals['icd10cm']:>10}{totals['snomed']:>8}{totals['loinc']:>7}"
        f"{totals['rxnorm']:>8}{totals['excluded']:>7}"
    )
    ingredients = len(t.ingredients)
    print(
        f"\n{len(t.condition_rows)} condition rows, {len(t.labs)} LOINC codes, {ingredients} ingredients, "
        f"{len(t.products)} products, {len(t.drug_classes)} drug classes"
    )
    print(f"table version {t.version}; loaded from {path} in {seconds * 1000:.1f} ms; no problems")
    return 0


def run_export(args) -> int:
    from rls_cds.terminology.valuesets import DEFAULT_CANONICAL_BASE, all_valuesets, validate_valueset

    t, _ = _load(_path(args))
    if t is None:
        return 1
    resources, skipped = all_valuesets(t, args.canonical_base or DEFAULT_CANONICAL_BASE)
    for resource in resources:
        try:
            validate_valueset(resource)
        except ValueError as exc:
            print(f"error: ValueSet {resource['id']} is not valid FHIR: {exc}", file=sys.stderr)
            return 1
    out: Path = args.fhir
    out.mkdir(parents=True, exist_ok=True)
    for resource in resources:
        target = out / f"ValueSet-{resource['id']}.json"
        target.write_text(json.dumps(resource, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(resources)} ValueSets to {out} (table version {t.version})")
    for key in skipped:
        print(f"skipped {key}: no codes")
    return 0
