"""Helpers for the operations tests: the CLI as a subprocess with a clean RLS_* environment."""

from __future__ import annotations

import os
import subprocess

from tests.support.cds_server import RLS_CDS_BIN


def run_cli(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """`rls-cds ARGS` with only the given RLS_*/REDIS_URL variables set (none inherited)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("RLS_") and k != "REDIS_URL"}
    return subprocess.run(
        [str(RLS_CDS_BIN), *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
