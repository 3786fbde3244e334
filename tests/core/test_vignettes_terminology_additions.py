"""Vignettes for the terminology rows added after the clinical review: ICD-10-CM weeks-of-gestation codes
below 28 weeks (Z3A.08-Z3A.27, read as "N weeks on that date" and recomputed to today) and the US Core /
VSAC current-smoker answers 428041000124106, 428061000124105, 428071000124103 and 65568007 (as a
Condition and as the answer of a 72166-2 smoking-status Observation)."""

from __future__ import annotations

import pytest

from tests.core import fhir as F
from tests.core.conftest import causes, finding

SMOKING_STATUS = ("72166-2", "Tobacco smoking status")
NEW_SMOKER_CODES = [
    ("428041000124106", "Current some day smoker"),
    ("428061000124105", "Current Light tobacco smoker"),
    ("428071000124103", "Current Heavy tobacco smoker"),
    ("65568007", "Cigarette smoker"),
]


def rls_patient(*extra):
    return [F.patient(), F.rls(), F.ferritin(150, days=20), F.tsat(30, days=20), *extra]


def weeks_code(weeks: int, onset_days: float) -> dict:
    code = f"Z3A.{weeks:02d}"
    return F.condition(F.ICD10, code, f"{weeks} weeks gestation of pregnancy", onset_days=onset_days)


# --- pregnancy: weeks-of-gestation codes below 28 weeks ------------------------------------------


def test_z3a_12_coded_120_days_ago_is_third_trimester_today(run):
    # 12 weeks + 120 days (17.1 weeks) = ~29.1 weeks today: third trimester.
    f = finding(run(rls_patient(weeks_code(12, onset_days=120))), "pregnancy")
    assert f.strength == "strong"
    assert "3rd trimester" in f.summary
    assert f.data["gestational_weeks"] == pytest.approx(12 + 120 / 7, abs=0.1)
    assert f.evidence[0].code == "Z3A.12" and "12 weeks on that date" in f.evidence[0].note


def test_z3a_10_coded_10_days_ago_is_pregnancy_not_third_trimester(run):
    f = finding(run(rls_patient(weeks_code(10, onset_days=10))), "pregnancy")
    assert f.strength == "moderate" and not f.actionable
    assert "3rd trimester" not in f.summary and "trimester unknown" not in f.summary
    assert f.data["gestational_weeks"] == pytest.approx(10 + 10 / 7, abs=0.1)  # recomputed, not 10
    assert "10 weeks on that date" in f.evidence[0].note


@pytest.mark.parametrize("weeks", range(8, 28))
def test_each_week_code_below_28_is_read_as_that_many_weeks_not_as_third_trimester(run, weeks):
    f = finding(run(rls_patient(weeks_code(weeks, onset_days=7))), "pregnancy")
    assert f.data["gestational_weeks"] == pytest.approx(weeks + 1, abs=0.1)
    assert f.strength == ("strong" if weeks + 1 >= 28 else "moderate")
    assert f"{weeks} weeks on that date" in f.evidence[0].note


@pytest.mark.parametrize("weeks", range(8, 28))
def test_week_codes_below_28_are_tabled_as_trimester_unknown(terminology, weeks):
    matches = terminology.condition_matches(F.ICD10, f"Z3A.{weeks:02d}")
    assert [(m.cause, m.qualifier) for m in matches] == [("pregnancy", "trimester_unknown")]
    assert matches[0].display == f"{weeks} weeks gestation of pregnancy"


def test_z3a_00_means_pregnant_with_the_week_unknown(run, terminology):
    matches = terminology.condition_matches(F.ICD10, "Z3A.00")
    assert [(m.cause, m.qualifier) for m in matches] == [("pregnancy", "trimester_unknown")]
    f = finding(
        run(rls_patient(F.condition(F.ICD10, "Z3A.00", matches[0].display, onset_days=10))), "pregnancy"
    )
    assert f.data["gestational_weeks"] is None and "trimester unknown" in f.summary


def test_z3a_01_is_a_lower_bound_on_gestational_age(run, terminology):
    # "Less than 8 weeks": at least 0 weeks on that date, so at least the weeks since then today.
    matches = terminology.condition_matches(F.ICD10, "Z3A.01")
    assert [(m.cause, m.qualifier) for m in matches] == [("pregnancy", "trimester_unknown")]
    z3a01 = F.condition(F.ICD10, "Z3A.01", matches[0].display, onset_days=200)
    f = finding(run(rls_patient(z3a01)), "pregnancy")
    assert f.data["weeks_at_least"] >= 28 and "under 8 weeks on that date" in f.evidence[0].note
    # Coded today: pregnant, week unknown (never "~0 weeks").
    today = finding(
        run(rls_patient(F.condition(F.ICD10, "Z3A.01", matches[0].display, onset_days=0))), "pregnancy"
    )
    assert "trimester unknown" in today.summary and "~0" not in today.summary


# --- lifestyle: current-smoker answers ------------------------------------------------------------


@pytest.mark.parametrize(("code", "display"), NEW_SMOKER_CODES)
def test_new_smoker_code_is_tobacco_in_the_table(terminology, code, display):
    matches = terminology.condition_matches(F.SCT, code)
    assert [(m.cause, m.qualifier) for m in matches] == [("lifestyle", "tobacco")]
    assert matches[0].display == display


@pytest.mark.parametrize(("code", "display"), NEW_SMOKER_CODES)
def test_new_smoker_code_as_condition_gives_tobacco(run, code, display):
    f = finding(run(rls_patient(F.condition(F.SCT, code, display))), "lifestyle")
    assert "Tobacco" in f.summary and f.data["factors"] == ["tobacco"]


@pytest.mark.parametrize(("code", "display"), NEW_SMOKER_CODES)
def test_new_smoker_code_as_smoking_status_answer_gives_tobacco(run, code, display):
    obs = F.coded_observation(*SMOKING_STATUS, F.SCT, code, display, days=20)
    f = finding(run(rls_patient(obs)), "lifestyle")
    assert f.data["factors"] == ["tobacco"]
    assert any(e.code == "72166-2" and "current use" in (e.note or "") for e in f.evidence)


@pytest.mark.parametrize(("code", "display"), NEW_SMOKER_CODES)
def test_newer_former_smoker_status_still_overrides_a_new_current_answer(run, code, display):
    old = F.coded_observation(*SMOKING_STATUS, F.SCT, code, display, days=300)
    new = F.coded_observation(*SMOKING_STATUS, F.SCT, "8517006", "Former smoker", days=10)
    assert "lifestyle" not in causes(run(rls_patient(old, new)))
