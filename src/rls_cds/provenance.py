"""What made a result: digests of the package's code, stored with assessments and panel runs so that
results made by other code (or tables) are never shown or carried over as if made by this one."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path


def files_digest(root: Path, suffixes: tuple[str, ...]) -> str:
    """SHA-256 over the files under ``root`` with these suffixes: relative path and bytes, in path order."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in suffixes):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


@cache
def code_digest() -> str:
    """All of the package's code: what turns data into findings is not the core alone (units and
    code matching in rls_cds.terminology, thin decoding, the batch's relevance filter...)."""
    import rls_cds

    return files_digest(Path(rls_cds.__file__).parent, (".py",))


def code_version() -> str:
    """The installed release and its code digest, e.g. '0.1.0+3f2a9c1d7e4b': a rule or card text changed
    without a version bump still changes it."""
    import rls_cds

    return f"{rls_cds.__version__}+{code_digest()[:12]}"
