"""NDJSON sources cut into chunks by byte range, and read back line by line.

A chunk owns every line whose first byte lies in ``[start, end)``, so chunks of one file never overlap
and never miss a line whatever the line lengths. Local files are read in large blocks (one system call
per few MB, not per line); remote files (Bulk Data downloads) are streamed with ``iter_remote``. A line
is identified in error reports by its file and line number; for a chunk that starts mid-file the number
is worked out only when an error needs it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from rls_cds.fhir.thin import KINDS

BLOCK = 4 * 2**20


@dataclass(frozen=True)
class Chunk:
    id: str
    source: str  # local path, or the Bulk file URL
    kind: str  # resource type the file holds ('' when unknown)
    start: int = 0
    end: int | None = None  # None: to the end of the file
    remote: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Chunk:
        return cls(**d)


def kind_of(name: str) -> str:
    """Resource type from a Bulk file name ('Observation.ndjson', 'Observation-2.ndjson', ...)."""
    stem = Path(name).name.split(".ndjson")[0]
    for kind in KINDS:
        if stem == kind or stem.startswith(f"{kind}-") or stem.startswith(f"{kind}_") or stem.endswith(kind):
            return kind
    return ""


def ndjson_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files named on the command line: directories contribute their *.ndjson files (sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(x for x in p.iterdir() if x.name.endswith((".ndjson", ".jsonl"))))
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"no such NDJSON file or directory: {p}")
    return out


def plan_local(files: list[Path], chunk_bytes: int) -> list[Chunk]:
    chunks: list[Chunk] = []
    for f in files:
        size = f.stat().st_size
        kind = kind_of(f.name)
        for n, start in enumerate(range(0, max(size, 1), chunk_bytes)):
            end = start + chunk_bytes
            chunks.append(Chunk(f"{f.name}:{n}", str(f), kind, start, end if end < size else None))
    return chunks


def iter_local(path: str, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]:
    """(byte offset, line) for every line that starts in [start, end); blank lines skipped: the lines
    of ``iter_local_blocks``, one at a time."""
    for offset, block in iter_local_blocks(path, start, end):
        for line in block.split(b"\n"):
            if line.strip():
                yield offset, line
            offset += len(line) + 1


def iter_local_blocks(path: str, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]:
    """(byte offset, block of whole lines) for the lines that start in [start, end): the line
    straddling ``start`` belongs to the previous chunk, the one straddling ``end`` to this one."""
    with open(path, "rb") as f:
        pos = start
        if start > 0:
            f.seek(start - 1)
            pos = start - 1 + len(f.readline())  # the straddling line belongs to the previous chunk
        carry = b""
        while True:
            if end is not None and pos >= end:
                return
            want = BLOCK if end is None else max(min(BLOCK, end - pos + 1), min(BLOCK, 65536))
            block = f.read(want)
            if not block:
                if carry.strip():
                    yield pos, carry
                return
            data = carry + block if carry else block
            last = data.rfind(b"\n")
            if last < 0:
                carry = data
                continue
            whole, carry = data[: last + 1], data[last + 1 :]
            if end is not None and pos + len(whole) > end:
                # Keep the lines that start before `end`: up to the newline ending the one with byte end-1.
                yield pos, whole[: whole.find(b"\n", end - pos - 1) + 1]
                return
            yield pos, whole
            pos += len(whole)


def line_number(path: str, offset: int) -> int:
    """1-based line number of the line starting at `offset` (used only to report a bad line)."""
    count = 0
    with open(path, "rb") as f:
        remaining = offset
        while remaining > 0:
            block = f.read(min(BLOCK, remaining))
            if not block:
                break
            count += block.count(b"\n")
            remaining -= len(block)
    return count + 1


def iter_stream(pieces: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """(line number, line) from a byte stream of any piece sizes (remote downloads)."""
    carry = b""
    lineno = 0
    for piece in pieces:
        if not piece:
            continue
        data = carry + piece if carry else piece
        lines = data.split(b"\n")
        carry = lines.pop()
        for line in lines:
            lineno += 1
            if line.strip():
                yield lineno, line
    if carry.strip():
        yield lineno + 1, carry


def total_bytes(files: list[Path]) -> int:
    return sum(os.path.getsize(f) for f in files)
