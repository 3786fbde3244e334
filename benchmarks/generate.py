"""Deterministic synthetic FHIR R4 patients for benchmarks and tests.

Patients look like what EHRs send: ICD-10-CM and SNOMED CT problems (some carrying both codings),
LOINC labs drawn as panels (CBC, BMP, iron panel) with units in the spellings real labs use,
product-level RxNorm orders (SCD/SBD), some pointing at contained Medications, mixed statuses.
Every value comes from ``random.Random(f"{seed}:{index}")``, so patient N is the same whatever
else is generated, and NDJSON for any N streams to disk one patient at a time.

    python benchmarks/generate.py ndjson --patients 10000 --out DIR [--size mixed|small|large]
    python benchmarks/generate.py request --size large --hook patient-view --out FILE
    python benchmarks/generate.py bundle --size large --out FILE

Library use: ``make_patient(index, size)``, ``make_request(...)``, ``make_bundle(...)``,
``write_ndjson(dir, n)``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
COND_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"

# Fixed so outputs are byte-identical run to run; --now moves every date with it.
DEFAULT_NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

RLS_CODES = [(ICD10, "G25.81", "Restless legs syndrome"), (SCT, "32914008", "Restless legs")]

# (icd10 code, display, snomed code or None, snomed display): RLS-relevant problems
# (codes from the project's terminology reference) and everyday problems that must not match.
RELEVANT_PROBLEMS = [
    ("D50.9", "Iron deficiency anemia, unspecified", "87522002", "Iron deficiency anemia"),
    ("E61.1", "Iron deficiency", "35240004", "Iron deficiency"),
    ("N18.30", "Chronic kidney disease, stage 3 unspecified", "433144002", "Chronic kidney disease stage 3"),
    ("N18.4", "Chronic kidney disease, stage 4 (severe)", "431857002", "Chronic kidney disease stage 4"),
    ("N18.6", "End stage renal disease", "46177005", "End-stage renal disease"),
    ("Z99.2", "Dependence on renal dialysis", None, None),
    ("G62.9", "Polyneuropathy, unspecified", "42345000", "Polyneuropathy"),
    (
        "E11.42",
        "Type 2 diabetes mellitus with diabetic polyneuropathy",
        "713706002",
        "Polyneuropathy due to type 2 diabetes mellitus",
    ),
    ("E11.9", "Type 2 diabetes mellitus without complications", "44054006", "Type 2 diabetes mellitus"),
    (
        "G20.A1",
        "Parkinson's disease without dyskinesia, without mention of fluctuation",
        "49049000",
        "Parkinson's disease",
    ),
    ("E83.42", "Hypomagnesemia", "190855004", "Hypomagnesemia"),
    ("D51.9", "Vitamin B12 deficiency anemia, unspecified", "190634004", "Cobalamin deficiency"),
    ("M54.16", "Radiculopathy, lumbar region", "128196005", "Lumbar radiculopathy"),
    ("M06.9", "Rheumatoid arthritis, unspecified", "69896004", "Rheumatoid arthritis"),
    ("F17.210", "Nicotine dependence, cigarettes, uncomplicated", "56294008", "Nicotine dependence"),
    ("F10.20", "Alcohol dependence, uncomplicated", "66590003", "Alcohol dependence"),
    (
        "Z34.83",
        "Encounter for supervision of other normal pregnancy, third trimester",
        "72892002",
        "Normal pregnancy",
    ),
]
OTHER_PROBLEMS = [
    ("I10", "Essential (primary) hypertension", "38341003", "Hypertensive disorder"),
    ("E78.5", "Hyperlipidemia, unspecified", "55822004", "Hyperlipidemia"),
    (
        "K21.9",
        "Gastro-esophageal reflux disease without esophagitis",
        "235595009",
        "Gastroesophageal reflux disease",
    ),
    ("J45.909", "Unspecified asthma, uncomplicated", "195967001", "Asthma"),
    ("E03.9", "Hypothyroidism, unspecified", "40930008", "Hypothyroidism"),
    ("F32.9", "Major depressive disorder, single episode, unspecified", "35489007", "Depressive disorder"),
    ("F41.1", "Generalized anxiety disorder", "21897009", "Generalized anxiety disorder"),
    ("M17.11", "Unilateral primary osteoarthritis, right knee", "396275006", "Osteoarthritis"),
    ("G47.33", "Obstructive sleep apnea (adult) (pediatric)", "78275009", "Obstructive sleep apnea syndrome"),
    ("J30.9", "Allergic rhinitis, unspecified", "61582004", "Allergic rhinitis"),
    ("I48.91", "Unspecified atrial fibrillation", "49436004", "Atrial fibrillation"),
    ("M81.0", "Age-related osteoporosis without current pathological fracture", "102447009", "Osteoporosis"),
    ("Z00.00", "Encounter for general adult medical examination without abnormal findings", None, None),
    ("R51.9", "Headache, unspecified", "25064002", "Headache"),
]

# Lab panels: (loinc, display, [(unit as displayed, UCUM code, low, high, decimals)]).
# Several spellings per analyte, as different lab systems send them.
CBC = [
    ("718-7", "Hemoglobin [Mass/volume] in Blood", [("g/dL", "g/dL", 9.0, 16.5, 1)]),
    ("787-2", "MCV [Entitic volume] by Automated count", [("fL", "fL", 70, 100, 0)]),
    ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", [("10*3/uL", "10*3/uL", 3.5, 11.0, 1)]),
    ("777-3", "Platelets [#/volume] in Blood by Automated count", [("10*3/uL", "10*3/uL", 140, 420, 0)]),
]
BMP = [
    ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", [("mg/dL", "mg/dL", 55, 190, 0)]),
    ("14749-6", "Glucose [Moles/volume] in Serum or Plasma", [("mmol/L", "mmol/L", 3.1, 10.5, 1)]),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", [("mg/dL", "mg/dL", 0.6, 3.2, 2)]),
    ("3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", [("mg/dL", "mg/dL", 7, 45, 0)]),
    (
        "33914-3",
        "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum or Plasma"
        " by Creatinine-based formula (MDRD)",
        [
            ("mL/min/{1.73_m2}", "mL/min/{1.73_m2}", 12, 110, 0),
            ("mL/min/1.73m2", "mL/min/{1.73_m2}", 12, 110, 0),
        ],
    ),
    (
        "98979-8",
        "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma or Blood"
        " by Creatinine-based formula (CKD-EPI 2021)",
        [("mL/min/{1.73_m2}", "mL/min/{1.73_m2}", 12, 110, 0)],
    ),
    ("2951-2", "Sodium [Moles/volume] in Serum or Plasma", [("mmol/L", "mmol/L", 133, 146, 0)]),
    ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", [("mmol/L", "mmol/L", 3.3, 5.4, 1)]),
]
IRON = [
    (
        "2276-4",
        "Ferritin [Mass/volume] in Serum or Plasma",
        [("ng/mL", "ng/mL", 8, 220, 0), ("µg/L", "ug/L", 8, 220, 0), ("ug/L", "ug/L", 8, 220, 0)],
    ),
    ("20567-4", "Ferritin [Mass/volume] in Serum or Plasma by Immunoassay", [("ng/mL", "ng/mL", 8, 220, 0)]),
    (
        "2498-4",
        "Iron [Mass/volume] in Serum or Plasma",
        [("ug/dL", "ug/dL", 25, 180, 0), ("µg/dL", "ug/dL", 25, 180, 0)],
    ),
    ("2500-7", "Iron binding capacity [Mass/volume] in Serum or Plasma", [("ug/dL", "ug/dL", 240, 450, 0)]),
    ("2502-3", "Iron saturation [Mass Fraction] in Serum or Plasma", [("%", "%", 8, 45, 0)]),
]
SINGLES = [
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", [("%", "%", 4.8, 9.5, 1)]),
    ("19123-9", "Magnesium [Mass/volume] in Serum or Plasma", [("mg/dL", "mg/dL", 1.4, 2.6, 1)]),
    ("2601-3", "Magnesium [Moles/volume] in Serum or Plasma", [("mmol/L", "mmol/L", 0.55, 1.05, 2)]),
    ("2132-9", "Cobalamin (Vitamin B12) [Mass/volume] in Serum or Plasma", [("pg/mL", "pg/mL", 150, 900, 0)]),
]
# CBC, BMP and iron panels pick a subset per draw (labs send one of the synonymous codes).
PANELS = [
    ("CBC", "58410-2", "CBC panel - Blood by Automated count", CBC, 4),
    ("BMP", "51990-0", "Basic metabolic panel - Blood", BMP, 6),
    ("IRON", "50190-8", "Iron and Iron binding capacity panel - Serum or Plasma", IRON, 4),
]

# (rxcui, display): product-level RxNorm (SCD/SBD) from the project's terminology reference,
# a mix of aggravators, RLS treatments, alternatives and everyday drugs that must not match.
RELEVANT_DRUGS = [
    ("312941", "sertraline 50 MG Oral Tablet"),
    ("208161", "sertraline 50 MG Oral Tablet [Zoloft]"),
    ("310385", "fluoxetine 20 MG Oral Capsule"),
    ("349332", "escitalopram 10 MG Oral Tablet"),
    ("200371", "citalopram 20 MG Oral Tablet"),
    ("313584", "venlafaxine 37.5 MG Oral Tablet"),
    ("596930", "duloxetine 30 MG Delayed Release Oral Capsule"),
    ("856783", "amitriptyline hydrochloride 10 MG Oral Tablet"),
    ("314111", "mirtazapine 30 MG Oral Tablet"),
    ("856377", "trazodone hydrochloride 50 MG Oral Tablet"),
    ("310671", "haloperidol 1 MG Oral Tablet"),
    ("402131", "aripiprazole 5 MG Oral Tablet"),
    ("1049908", "diphenhydramine hydrochloride 2.5 MG/ML Oral Solution [Benadryl]"),
    ("866427", "24 HR metoprolol succinate 25 MG Extended Release Oral Tablet"),
    ("197380", "atenolol 25 MG Oral Tablet"),
    ("205315", "topiramate 25 MG Oral Capsule"),
    ("310430", "gabapentin 100 MG Oral Capsule"),
    ("483448", "pregabalin 50 MG Oral Capsule"),
    ("859033", "pramipexole dihydrochloride 0.125 MG Oral Tablet"),
    ("312846", "ropinirole 0.5 MG Oral Tablet"),
    ("310325", "ferrous sulfate 325 MG Oral Tablet"),
    ("993541", "24 HR bupropion hydrochloride 150 MG Extended Release Oral Tablet"),
    ("828269", "loratadine 10 MG Oral Capsule"),
]
OTHER_DRUGS = [
    ("314076", "lisinopril 10 MG Oral Tablet"),
    ("197361", "amlodipine 5 MG Oral Tablet"),
    ("617310", "atorvastatin 20 MG Oral Tablet"),
    ("861007", "metformin hydrochloride 500 MG Oral Tablet"),
    ("966247", "levothyroxine sodium 0.05 MG Oral Tablet"),
    ("310965", "ibuprofen 200 MG Oral Tablet"),
    ("313782", "acetaminophen 325 MG Oral Tablet"),
    ("197884", "lisinopril 40 MG Oral Tablet"),
]
# A draft order that the order-select hook must judge (an SSRI for an RLS patient).
DRAFT_DRUG = ("312941", "sertraline 50 MG Oral Tablet")

GIVEN = ["Alex", "Sam", "Robin", "Jordan", "Casey", "Morgan", "Taylor", "Jamie", "Avery", "Riley"]
FAMILY = ["Synth", "Example", "Testperson", "Fictional", "Sample", "Demo"]

# (conditions, observations, medication requests) per size.
SIZES = {"small": (5, 10, 4), "large": (50, 500, 80)}


def _rng(seed: int, index: int) -> random.Random:
    return random.Random(f"{seed}:{index}")


def _coding(system: str, code: str, display: str | None) -> dict[str, str]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def _when(rng: random.Random, now: datetime, max_days: int) -> datetime:
    return now - timedelta(days=rng.randint(1, max_days), minutes=rng.randint(0, 1439))


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _patient(rng: random.Random, pid: str, now: datetime, pregnant: bool) -> dict[str, Any]:
    age_days = rng.randint(18 * 365, 90 * 365) if not pregnant else rng.randint(20 * 365, 40 * 365)
    return {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"lastUpdated": _iso(now - timedelta(days=rng.randint(1, 400)))},
        "identifier": [
            {"system": "urn:oid:2.16.840.1.113883.19.5", "value": f"MRN{rng.randint(10**6, 10**7)}"}
        ],
        "name": [{"use": "official", "family": rng.choice(FAMILY), "given": [rng.choice(GIVEN)]}],
        "gender": "female" if pregnant else rng.choice(["female", "male"]),
        "birthDate": (now - timedelta(days=age_days)).strftime("%Y-%m-%d"),
    }


def _condition_code(rng: random.Random, row: tuple) -> dict[str, Any]:
    icd, icd_display, sct, sct_display = row
    style = rng.random()
    codings = []
    if sct is None or style < 0.55:
        codings.append(_coding(ICD10, icd, icd_display))
    if sct is not None and (style >= 0.35):
        codings.append(_coding(SCT, sct, sct_display))
    return {"coding": codings, "text": icd_display if rng.random() < 0.7 else (sct_display or icd_display)}


def _condition(
    rng: random.Random, pid: str, n: int, code: dict, now: datetime, active: bool
) -> dict[str, Any]:
    onset = _when(rng, now, 15 * 365)
    out: dict[str, Any] = {
        "resourceType": "Condition",
        "id": f"{pid}-cond-{n}",
        "clinicalStatus": {
            "coding": [_coding(CLINICAL, "active" if active else rng.choice(["resolved", "inactive"]), None)]
        },
        "verificationStatus": {
            "coding": [_coding(VERIFICATION, "confirmed" if rng.random() < 0.9 else "provisional", None)]
        },
        "category": [
            {
                "coding": [
                    _coding(COND_CATEGORY, rng.choice(["problem-list-item", "encounter-diagnosis"]), None)
                ]
            }
        ],
        "code": code,
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": _iso(onset),
        "recordedDate": _iso(onset + timedelta(days=rng.randint(0, 30))),
    }
    if not active:
        out["abatementDateTime"] = _iso(onset + timedelta(days=rng.randint(30, 900)))
    return out


def _conditions(rng: random.Random, pid: str, count: int, rls: bool, now: datetime) -> list[dict[str, Any]]:
    out = []
    if rls:
        system, code, display = rng.choice(RLS_CODES)
        rls_code = {"coding": [_coding(system, code, display)], "text": "Restless legs syndrome"}
        out.append(_condition(rng, pid, 0, rls_code, now, True))
    while len(out) < count:
        table = RELEVANT_PROBLEMS if rng.random() < 0.35 else OTHER_PROBLEMS
        code = _condition_code(rng, rng.choice(table))
        out.append(_condition(rng, pid, len(out), code, now, rng.random() < 0.75))
    return out


def _value(rng: random.Random, spec: tuple) -> tuple[dict[str, Any], float, float]:
    unit, ucum, low, high, decimals = spec
    value = round(rng.uniform(low, high), decimals)
    if decimals == 0:
        value = int(value)
    quantity = {"value": value, "unit": unit, "system": UCUM, "code": ucum}
    return quantity, low, high


def _observation(rng, pid: str, n: int, test: tuple, when: datetime, panel: str | None) -> dict[str, Any]:
    loinc, display, specs = test
    quantity, low, high = _value(rng, rng.choice(specs))
    span = high - low
    ref_low, ref_high = round(low + span * 0.2, 2), round(high - span * 0.2, 2)
    status = rng.choices(["final", "preliminary", "amended", "corrected"], [0.85, 0.07, 0.05, 0.03])[0]
    out: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"{pid}-obs-{n}",
        "status": status,
        "category": [{"coding": [_coding(OBS_CATEGORY, "laboratory", "Laboratory")]}],
        "code": {"coding": [_coding(LOINC, loinc, display)], "text": display.split(" [")[0]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": _iso(when),
        "issued": _iso(when + timedelta(hours=rng.randint(2, 30))),
        "valueQuantity": quantity,
        "referenceRange": [
            {
                "low": {"value": ref_low, "unit": quantity["unit"], "system": UCUM, "code": quantity["code"]},
                "high": {
                    "value": ref_high,
                    "unit": quantity["unit"],
                    "system": UCUM,
                    "code": quantity["code"],
                },
            }
        ],
    }
    if quantity["value"] < ref_low or quantity["value"] > ref_high:
        flag = "L" if quantity["value"] < ref_low else "H"
        out["interpretation"] = [
            {"coding": [_coding(INTERPRETATION, flag, "Low" if flag == "L" else "High")]}
        ]
    if panel:
        out["note"] = [{"text": f"Ordered as part of {panel}"}]
    return out


def _observations(rng: random.Random, pid: str, count: int, now: datetime) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while len(out) < count:
        when = _when(rng, now, 6 * 365)
        if rng.random() < 0.8:
            name, _code, _display, tests, size = rng.choice(PANELS)
            picked = rng.sample(tests, min(size, len(tests)))
        else:
            name, picked = None, [rng.choice(SINGLES)]
        for test in picked[: count - len(out)]:
            out.append(_observation(rng, pid, len(out), test, when, name))
    return out


def _medication_request(rng, pid: str, n: int, drug: tuple, now: datetime) -> dict[str, Any]:
    rxcui, display = drug
    authored = _when(rng, now, 5 * 365)
    status = rng.choices(["active", "stopped", "completed", "on-hold"], [0.45, 0.25, 0.25, 0.05])[0]
    concept = {"coding": [_coding(RXNORM, rxcui, display)], "text": display}
    out: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": f"{pid}-medreq-{n}",
        "status": status,
        "intent": "order",
        "subject": {"reference": f"Patient/{pid}"},
        "authoredOn": _iso(authored),
        "dosageInstruction": [
            {"text": rng.choice(["Take 1 tablet by mouth daily", "1 at bedtime", "Twice daily"])}
        ],
    }
    if rng.random() < 0.2:
        # Some EHRs send the drug as a contained Medication and point at it.
        med_id = f"med{n}"
        out["contained"] = [{"resourceType": "Medication", "id": med_id, "code": concept}]
        out["medicationReference"] = {"reference": f"#{med_id}", "display": display}
    else:
        out["medicationCodeableConcept"] = concept
    if status in ("stopped", "completed"):
        end = authored + timedelta(days=rng.randint(14, 365))
        out["dispenseRequest"] = {"validityPeriod": {"start": _iso(authored), "end": _iso(min(end, now))}}
    return out


def _medication_requests(rng: random.Random, pid: str, count: int, now: datetime) -> list[dict[str, Any]]:
    out = []
    while len(out) < count:
        table = RELEVANT_DRUGS if rng.random() < 0.4 else OTHER_DRUGS
        out.append(_medication_request(rng, pid, len(out), rng.choice(table), now))
    return out


def _counts(rng: random.Random, size: str) -> tuple[int, int, int]:
    if size in SIZES:
        return SIZES[size]
    # "mixed": a Bulk export population, mostly modest records with a long tail.
    if rng.random() < 0.02:
        return SIZES["large"]
    return rng.randint(2, 12), rng.randint(5, 40), rng.randint(1, 10)


def make_patient(
    index: int, size: str = "small", seed: int = 1, now: datetime = DEFAULT_NOW, rls: bool | None = None
) -> dict[str, list[dict[str, Any]]]:
    """One patient's resources by type. rls=None: about 40% have an RLS diagnosis."""
    rng = _rng(seed, index)
    pid = f"synth-{seed}-{index}"
    has_rls = rng.random() < 0.4 if rls is None else rls
    n_cond, n_obs, n_med = _counts(rng, size)
    pregnant = rng.random() < 0.03
    return {
        "Patient": [_patient(rng, pid, now, pregnant)],
        "Condition": _conditions(rng, pid, n_cond, has_rls, now),
        "Observation": _observations(rng, pid, n_obs, now),
        "MedicationRequest": _medication_requests(rng, pid, n_med, now),
    }


def flat(patient: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [
        r
        for kind in ("Patient", "Condition", "Observation", "MedicationRequest")
        for r in patient.get(kind, [])
    ]


def _searchset(resources: list[dict[str, Any]], base: str) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
            for r in resources
        ],
    }


def make_bundle(
    patient: dict[str, list[dict[str, Any]]], base: str = "http://ehr.example/fhir"
) -> dict[str, Any]:
    """A collection Bundle of everything for the patient."""
    bundle = _searchset(flat(patient), base)
    bundle["type"] = "collection"
    del bundle["total"]
    for entry in bundle["entry"]:
        del entry["search"]
    return bundle


def default_prefetch_keys(hook: str = "patient-view") -> dict[str, str]:
    """The catalogue's prefetch templates for the hook, or a fallback when the service is not importable."""
    try:
        from rls_cds.api.catalogue import load_catalogue
        from rls_cds.settings import get_settings
        from rls_cds.terminology import load_terminology

        settings = get_settings()
        terminology = load_terminology(path=settings.terminology_dir)
        services = load_catalogue(settings.catalogue_dir, terminology)
        service = next(s for s in services.values() if s.hook == hook)
        return dict(service.prefetch)
    except Exception:  # the service may not be built yet: fall back to one key per type
        return {
            "patient": "Patient/{{context.patientId}}",
            "conditions": "Condition?patient={{context.patientId}}",
            "medications": "MedicationRequest?patient={{context.patientId}}",
            "observations1": "Observation?patient={{context.patientId}}",
        }


def _query_codes(template: str) -> set[str] | None:
    """LOINC codes an Observation query asks for (None = all)."""
    if "code=" not in template:
        return None
    codes = template.split("code=", 1)[1].split("&", 1)[0]
    return {c.split("|")[-1] for c in codes.split(",")}


def make_prefetch(
    patient: dict[str, list[dict[str, Any]]], keys: dict[str, str], base: str = "http://ehr.example/fhir"
) -> dict[str, Any]:
    """Fill each prefetch key with what the EHR would return for its query."""
    out: dict[str, Any] = {}
    claimed: set[str] = set()
    for key, template in keys.items():
        kind = template.split("?")[0].split("/")[0]
        if kind == "Patient":
            out[key] = patient["Patient"][0]
            continue
        items = patient.get(kind, [])
        if kind == "Observation":
            codes = _query_codes(template)
            items = [o for o in items if o["id"] not in claimed and (codes is None or _loinc(o) in codes)]
            claimed.update(o["id"] for o in items)
        out[key] = _searchset(items, base)
    if not any(t.split("?")[0] == "Observation" for t in keys.values()):
        # No lab query in the catalogue (terminology not loaded): still send the labs, as EHRs
        # that prefetch by category would; the service reads every prefetch value.
        out["observations"] = _searchset(patient.get("Observation", []), base)
    return out


def _loinc(obs: dict[str, Any]) -> str:
    return obs["code"]["coding"][0]["code"]


def make_draft_orders(pid: str, drug: tuple = DRAFT_DRUG, now: datetime = DEFAULT_NOW) -> dict[str, Any]:
    rxcui, display = drug
    order = {
        "resourceType": "MedicationRequest",
        "id": "draft-1",
        "status": "draft",
        "intent": "proposal",
        "subject": {"reference": f"Patient/{pid}"},
        "authoredOn": _iso(now),
        "medicationCodeableConcept": {"coding": [_coding(RXNORM, rxcui, display)], "text": display},
        "dosageInstruction": [{"text": "Take 1 tablet by mouth daily"}],
    }
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": order}]}


def make_request(
    size: str = "large",
    hook: str = "patient-view",
    seed: int = 1,
    index: int = 0,
    now: datetime = DEFAULT_NOW,
    prefetch_keys: dict[str, str] | None = None,
    rls: bool = True,
) -> dict[str, Any]:
    """A CDS Hooks request with full prefetch; order-select adds a draftOrders Bundle and selections."""
    patient = make_patient(index, size, seed, now, rls=rls)
    pid = patient["Patient"][0]["id"]
    keys = prefetch_keys if prefetch_keys is not None else default_prefetch_keys(hook)
    context: dict[str, Any] = {"userId": "Practitioner/synth-practitioner-1", "patientId": pid}
    if hook in ("order-select", "order-sign"):
        context["draftOrders"] = make_draft_orders(pid, now=now)
        if hook == "order-select":
            context["selections"] = ["MedicationRequest/draft-1"]
    return {
        "hook": hook,
        "hookInstance": str(uuid.UUID(int=_rng(seed, index).getrandbits(128), version=4)),
        "context": context,
        "prefetch": make_prefetch(patient, keys),
    }


def write_ndjson(
    out_dir: Path, patients: int, seed: int = 1, size: str = "mixed", now: datetime = DEFAULT_NOW
) -> dict[str, int]:
    """Bulk-style NDJSON, one file per type, one patient in memory at a time. Returns counts per type."""
    out_dir.mkdir(parents=True, exist_ok=True)
    kinds = ("Patient", "Condition", "Observation", "MedicationRequest", "Medication")
    counts = dict.fromkeys(kinds, 0)
    with contextlib.ExitStack() as stack:
        files = {k: stack.enter_context(open(out_dir / f"{k}.ndjson", "w", encoding="utf-8")) for k in kinds}
        for index in range(patients):
            patient = make_patient(index, size, seed, now)
            patient["Medication"] = _externalise_medications(patient["MedicationRequest"], index)
            for kind in kinds:
                lines = [
                    json.dumps(r, separators=(",", ":"), ensure_ascii=False) for r in patient.get(kind, [])
                ]
                if lines:
                    files[kind].write("\n".join(lines) + "\n")
                    counts[kind] += len(lines)
    return counts


def _externalise_medications(requests: list[dict[str, Any]], index: int) -> list[dict[str, Any]]:
    """Bulk exports often carry Medications as their own resources: move every other contained one out."""
    meds = []
    for n, req in enumerate(requests):
        if "contained" in req and n % 2 == 0:
            med = dict(req.pop("contained")[0])
            med["id"] = f"synth-med-{index}-{n}"
            req["medicationReference"] = {
                "reference": f"Medication/{med['id']}",
                "display": req["medicationReference"]["display"],
            }
            meds.append(med)
    return meds


def _parse_now(text: str | None) -> datetime:
    if not text:
        return DEFAULT_NOW
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _write_json(obj: Any, out: str | None) -> None:
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    if out in (None, "-"):
        sys.stdout.write(text + "\n")
    else:
        Path(out).write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--now", help="ISO date-time every date is relative to (default 2026-11-01T12:00Z)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    nd = sub.add_parser("ndjson", help="Bulk-style NDJSON for N patients")
    nd.add_argument("--patients", type=int, required=True)
    nd.add_argument("--size", choices=["mixed", "small", "large"], default="mixed")
    nd.add_argument("--out", required=True)
    rq = sub.add_parser("request", help="a CDS Hooks request with prefetch")
    rq.add_argument("--size", choices=["small", "large"], default="large")
    rq.add_argument("--hook", choices=["patient-view", "order-select", "order-sign"], default="patient-view")
    rq.add_argument("--index", type=int, default=0)
    rq.add_argument("--no-rls", action="store_true", help="a patient without an RLS diagnosis")
    rq.add_argument("--out")
    bd = sub.add_parser("bundle", help="a collection Bundle of one patient")
    bd.add_argument("--size", choices=["small", "large"], default="large")
    bd.add_argument("--index", type=int, default=0)
    bd.add_argument("--out")
    args = ap.parse_args(argv)
    now = _parse_now(args.now)
    if args.cmd == "ndjson":
        counts = write_ndjson(Path(args.out), args.patients, args.seed, args.size, now)
        print(json.dumps(counts))
    elif args.cmd == "request":
        _write_json(
            make_request(args.size, args.hook, args.seed, args.index, now, rls=not args.no_rls), args.out
        )
    else:
        _write_json(make_bundle(make_patient(args.index, args.size, args.seed, now, rls=True)), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
