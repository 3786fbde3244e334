"""`rls-cds panel` (placeholder until its issue lands)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("panel", help="(not yet available)")
    p.set_defaults(func=lambda args: print("rls-cds panel is not available yet") or 2)
