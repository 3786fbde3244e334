"""NDJSON streaming: byte-range chunks, line numbers, remote pieces, memory bounded by kept facts."""

from __future__ import annotations

import random
import tracemalloc
from datetime import UTC, datetime

from rls_cds.fhir import thin
from rls_cds.panels import ndjson, work
from rls_cds.panels.relevance import LabHorizon, Relevance
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


def test_map_drops_exactly_the_old_labs_the_core_skips(terminology):
    """The map's look-back horizon agrees with the core's own read of each lab's date: whichever
    date field carries it, a lab is dropped when and only when the core would skip it."""
    import orjson

    from rls_cds.core.engine import read_scope
    from rls_cds.core.facts import extract

    now = datetime(2026, 6, 1, tzinfo=UTC)
    scope = read_scope(terminology, now)
    old, recent = "2000-01-15", "2026-05-01"
    dates = [
        {"effectiveDateTime": old},
        {"effectiveDateTime": recent},
        {"effectiveDateTime": "not a date", "issued": old},
        {"effectiveDateTime": "not a date", "issued": recent},
        {"effectivePeriod": {"start": old}},
        {"effectivePeriod": {"end": recent}, "effectiveInstant": old + "T08:00:00Z"},
        {"effectiveInstant": recent + "T08:00:00+02:00"},
        {"issued": old + "T10:00:00Z"},
        {},  # no date at all: the core keeps it (date unknown)
        {"effectiveDateTime": scope.horizon.date().isoformat()},  # on the horizon itself
        {"effectiveDateTime": "1999"},
    ]
    analytes = {"magnesium": ("19123-9", "mg/dL"), "ferritin": ("2276-4", "ng/mL")}  # ferritin: kept old
    lines, expected_refs = [], set()
    for analyte, (loinc, unit) in analytes.items():
        for i, when in enumerate(dates):
            res = {
                "resourceType": "Observation",
                "id": f"{analyte}-{i}",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
                "subject": {"reference": "Patient/p1"},
                "valueQuantity": {"value": 1.0, "unit": unit, "code": unit},
                **when,
            }
            lines.append(orjson.dumps(res))
    core = extract([orjson.loads(x) for x in lines], [], terminology, frozenset(), scope)
    expected_refs = {lab.ref for lab in core.labs}
    horizon = LabHorizon(terminology, now)
    parts, _meds, _stats = work.map_lines(enumerate(lines, 1), Relevance(terminology), 1, horizon=horizon)
    kept = {f"Observation/{r.id}" for items in parts.get(0, {}).values() for r in items}
    assert kept == expected_refs
    # Some dropped, not all.
    assert any(r.startswith("Observation/magnesium") for r in kept) and len(kept) < len(lines)
    assert all(f"Observation/ferritin-{i}" in kept for i in range(len(dates)))
