"""NDJSON streaming: byte-range chunks, line numbers, remote pieces, memory bounded by kept facts."""

from __future__ import annotations

import random
import tracemalloc

from rls_cds.panels import ndjson, thin, work
from rls_cds.panels.relevance import Relevance
from tests.panels.conftest import write_export


def _lines(rng: random.Random, n: int) -> list[bytes]:
    return [
        b'{"resourceType":"Basic","id":"%d","t":"%s"}' % (i, b"x" * rng.randint(0, 300)) for i in range(n)
    ]


def test_byte_range_chunks_cover_every_line_exactly_once(tmp_path, monkeypatch):
    rng = random.Random(11)
    lines = _lines(rng, 3000)
    # Blank lines in between and no newline at the very end: both happen in real exports.
    body = b"\n".join(line + (b"\n" if rng.random() < 0.05 else b"") for line in lines)
    path = tmp_path / "Basic.ndjson"
    path.write_bytes(body)
    for chunk_bytes in (1, 97, 1000, 4096, 65536, 10**7):
        monkeypatch.setattr(ndjson, "BLOCK", rng.choice([7, 1024, 65536]))
        got, from_blocks = [], []
        for chunk in ndjson.plan_local([path], chunk_bytes):
            got.extend(line for _, line in ndjson.iter_local(chunk.source, chunk.start, chunk.end))
            for offset, block in ndjson.iter_local_blocks(chunk.source, chunk.start, chunk.end):
                assert body[offset : offset + len(block)] == block  # offsets are true file positions
                from_blocks.extend(x for x in block.split(b"\n") if x.strip())
        assert got == lines, chunk_bytes
        assert from_blocks == lines, chunk_bytes


def test_offsets_map_to_line_numbers(tmp_path):
    path = tmp_path / "x.ndjson"
    path.write_bytes(b'{"a":1}\n\n{"b":2}\n{"c":3}\n')
    found = {line: ndjson.line_number(str(path), off) for off, line in ndjson.iter_local(str(path))}
    assert found == {b'{"a":1}': 1, b'{"b":2}': 3, b'{"c":3}': 4}


def test_remote_stream_split_anywhere_gives_the_same_lines():
    rng = random.Random(5)
    lines = _lines(rng, 500)
    data = b"\n".join(lines) + b"\n"
    cuts = sorted(rng.sample(range(1, len(data)), 200))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    got = list(ndjson.iter_stream(pieces))
    assert [line for _, line in got] == lines
    assert [n for n, _ in got] == list(range(1, 501))


def test_map_keeps_only_what_rules_read_grouped_by_patient(tmp_path, terminology):
    counts = write_export(tmp_path, 40)
    rel = Relevance(terminology)
    kept = 0
    by_patient: dict[str, list] = {}
    for kind in ("Patient", "Condition", "Observation", "MedicationRequest"):
        parts, _meds, stats = work.map_lines(ndjson.iter_local(str(tmp_path / f"{kind}.ndjson")), rel, 3)
        assert stats["resources"] == counts[kind]
        assert stats["bad_lines"] == 0
        kept += stats["kept"]
        for p, patients in parts.items():
            for key, items in patients.items():
                assert work.partition_of(key, 3) == p
                assert all(thin.patient_key(r) == key for r in items)
                by_patient.setdefault(key, []).extend(items)
    assert len(by_patient) == 40  # every patient (Patients are always kept)
    assert all(key.startswith("Patient/synth-7-") for key in by_patient)
    # Everyday drugs and problems are dropped after decoding: strictly less is kept than read.
    assert 40 < kept < sum(counts.values()) - counts["Medication"]
    for items in by_patient.values():
        assert sum(type(r) is thin.Patient for r in items) == 1


def test_memory_of_a_map_is_bounded_by_its_chunk_not_the_file(tmp_path, terminology):
    write_export(tmp_path, 300, seed=3)
    path = tmp_path / "Observation.ndjson"
    size = path.stat().st_size
    rel = Relevance(terminology)
    peaks = []
    for chunk_bytes in (size // 8, size):
        tracemalloc.start()
        for chunk in ndjson.plan_local([path], chunk_bytes)[:1]:
            work.map_lines(ndjson.iter_local(chunk.source, chunk.start, chunk.end), rel, 4)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    # One eighth of the file costs well under half the memory of the whole file in one chunk.
    assert peaks[0] < peaks[1] / 2.5, peaks
