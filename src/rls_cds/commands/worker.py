"""`rls-cds worker` (placeholder until its issue lands)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("worker", help="(not yet available)")
    p.set_defaults(func=lambda args: print("rls-cds worker is not available yet") or 2)
