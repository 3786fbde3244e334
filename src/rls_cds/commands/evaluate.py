"""`rls-cds evaluate PATH`: the offline main job: one patient file in, cards out.

PATH is a FHIR Bundle (any type), a single resource, or a CDS Hooks request (prefetch under any key
names; ``context.draftOrders`` are the orders being decided). ``--json`` prints exactly one JSON
object: ``{"cards": [...], "findings": [...], "warnings": [...], "table_version": ..., ...}``.
Exit status: 0 on success (with or without cards), 2 when the file or the tables cannot be read.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, time
from pathlib import Path

HOOK_CHOICES = ("patient-view", "order-select", "order-sign", "medication-prescribe")


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate one patient file (FHIR Bundle or CDS Hooks request) and print the cards",
        description=__doc__.splitlines()[0],
    )
    p.add_argument(
        "path", type=Path, help="FHIR Bundle / resource / CDS Hooks request JSON file ('-' = stdin)"
    )
    p.add_argument(
        "--hook",
        choices=HOOK_CHOICES,
        default=None,
        help="hook to render cards for (default: the request's hook, else patient-view)",
    )
    p.add_argument("--now", default=None, help="evaluation date/time, ISO 8601 (default: current UTC time)")
    p.add_argument("--json", action="store_true", help="print one JSON object with cards and findings")
    p.add_argument("--strict", action="store_true", help="validate every resource with fhir.resources")
    p.add_argument("--terminology", type=Path, default=None, help="terminology directory (default: settings)")
    p.set_defaults(func=run)


def _parse_now(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        from datetime import date

        value = datetime.combine(date.fromisoformat(text), time(12, 0))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _fail(message: str) -> int:
    print(f"rls-cds evaluate: {message}", file=sys.stderr)
    return 2


def run(args) -> int:
    import msgspec
    import orjson

    from rls_cds.core.engine import evaluate, render_cards
    from rls_cds.core.resources import read_input

    try:
        now = _parse_now(args.now)
    except ValueError:
        return _fail(f"--now {args.now!r} is not an ISO 8601 date or date-time")
    try:
        raw = sys.stdin.buffer.read() if str(args.path) == "-" else args.path.read_bytes()
    except OSError as exc:
        return _fail(f"cannot read {args.path}: {exc.strerror or exc}")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _fail(f"{args.path} is not valid JSON ({exc})")
    terminology = _load_terminology(args.terminology)
    if isinstance(terminology, str):
        return _fail(terminology)

    parsed = read_input(obj)
    hook = args.hook or parsed.hook or "patient-view"
    if hook not in HOOK_CHOICES:
        hook = "patient-view"
    drafts = parsed.draft_orders if hook != "patient-view" else []
    assessment = evaluate(
        parsed.resources,
        now=now,
        terminology=terminology,
        draft_orders=drafts,
        draft_warnings=parsed.draft_warnings if drafts else (),
        strict=args.strict,
    )
    cards = render_cards(assessment, hook=hook)
    warnings = list(dict.fromkeys(parsed.warnings + assessment.warnings))
    if args.json:
        out = {
            "hook": hook,
            "now": assessment.now,
            "table_version": assessment.table_version,
            "fingerprint": assessment.fingerprint,
            "has_rls": assessment.has_rls,
            "cards": cards,
            "findings": msgspec.to_builtins(assessment.findings),
            "warnings": warnings,
        }
        sys.stdout.buffer.write(orjson.dumps(out, option=orjson.OPT_INDENT_2) + b"\n")
        return 0
    _print_readable(hook, assessment, cards, warnings)
    return 0


def _load_terminology(path: Path | None):
    from rls_cds.terminology import TerminologyError, load_terminology

    if path is None:
        from rls_cds.settings import get_settings

        path = get_settings().terminology_dir
    try:
        return load_terminology(path=path)
    except TerminologyError as exc:
        return f"terminology tables are invalid: {exc}"
    except OSError as exc:
        return f"cannot read terminology tables at {path}: {exc}"


def _print_readable(hook: str, assessment, cards: list[dict], warnings: list[str]) -> None:
    print(f"Hook: {hook}   evaluated at: {assessment.now}   tables: {assessment.table_version}")
    if not assessment.has_rls:
        print("No active RLS diagnosis: no cards (findings are listed below for reference).")
    print(f"{len(cards)} card(s)")
    for i, card in enumerate(cards, 1):
        topic = card["source"].get("topic", {}).get("code", "?")
        print()
        print(f"[{i}] {card['indicator'].upper():7} {card['summary']}")
        print(f"    cause: {topic}   source: {card['source'].get('label')}")
        for line in (card.get("detail") or "").splitlines():
            print(f"    {line}" if line else "")
        for s in card.get("suggestions") or []:
            kinds = ", ".join(a["type"] for a in s.get("actions", []))
            print(f"    -> suggestion: {s['label']} ({kinds})")
    if assessment.findings and not cards:
        print()
        print("Findings:")
        for f in assessment.findings:
            print(f"  - {f.cause} ({f.strength}{', actionable' if f.actionable else ''}): {f.summary}")
    if warnings:
        print()
        print("Warnings:")
        for w in warnings:
            print(f"  - {w}")
