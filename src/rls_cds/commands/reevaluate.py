"""`rls-cds reevaluate` (placeholder until its issue lands)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("reevaluate", help="(not yet available)")
    p.set_defaults(func=lambda args: print("rls-cds reevaluate is not available yet") or 2)
