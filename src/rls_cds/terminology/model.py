"""What the terminology index hands out. Frozen and hashable (sequences are tuples) so callers may
put them in sets or use them as dict keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STRENGTHS = ("strong", "moderate", "weak", "informational")
DRUG_STRENGTHS = ("strong", "moderate", "weak", "insufficient", "none")
ROLES = (
    "aggravator",
    "withdrawal",
    "rls_treatment",
    "alternative",
    "insufficient_evidence",
    "caffeine",
    "alcohol",
    "none",
)
INDICATORS = ("warning", "info")


@dataclass(frozen=True, eq=False)
class CauseDef:
    """One cause of causes.yaml. ``thresholds`` are in the analyte's canonical unit; names follow the
    suffix convention of terminology/README.md (_max <=, _min >=, _low <, _high >)."""

    id: str
    title: str
    strength: str
    actionable: bool
    thresholds: dict[str, float]
    lookback_days: dict[str, int]
    summary: str
    detail: str
    action: str
    reference_label: str
    reference_url: str
    source: str = ""
    qualifier_strength: dict[str, str] = field(default_factory=dict)
    coverage_note: str = ""

    def strength_for(self, qualifier: str | None) -> str:
        """Strength of a finding carried by a match with this qualifier (falls back to the cause's)."""
        return self.qualifier_strength.get(qualifier or "", self.strength)

    def render(self, template: str, **values: Any) -> str:
        """Fill one of this cause's templates ('summary' | 'detail' | 'action'); missing values become ''."""
        text = getattr(self, template)
        return text.format_map(_Blank(values))


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


@dataclass(frozen=True)
class ConditionMatch:
    cause: str
    qualifier: str | None
    display: str
    source: str
    code: str = ""  # the table row's code (dotted for ICD-10-CM): which row matched
    match: str = "exact"  # 'exact' | 'prefix'


@dataclass(frozen=True)
class LabDef:
    loinc: str
    analyte: str
    canonical_unit: str
    display: str = ""
    cause: str = ""
    source: str = ""


@dataclass(frozen=True)
class DrugIngredient:
    rxcui: str  # '' when the ingredient's RxCUI is not verified (matched by product code/name)
    name: str
    role: str
    drug_class: str
    strength: str
    indicator: str
    alternative: str | None
    brands: tuple[str, ...] = ()
    tty: str = "IN"  # 'IN' | 'PIN'
    base_rxcui: str = ""  # the IN a PIN maps to (equals rxcui for an IN)
    withdrawal: bool = False  # stopping it recently counts for drug_withdrawal
    atc: tuple[str, ...] = ()
    source: str = ""

    @property
    def cause(self) -> str | None:
        """The cause id this ingredient can produce when ordered (or stopped, for withdrawal)."""
        return _ROLE_CAUSE.get(self.role)


_ROLE_CAUSE = {
    "aggravator": "drug_induced",
    "withdrawal": "drug_withdrawal",
    "caffeine": "lifestyle",
    "alcohol": "lifestyle",
}


@dataclass(frozen=True)
class DrugConcept:
    code: str
    system: str
    display: str
    ingredients: tuple[DrugIngredient, ...]
    route_excluded: bool = False  # topical/ophthalmic product: no systemic exposure, never flag
    tty: str = ""  # RxNorm term type (IN, PIN, SCD, SBD, SCDC, ...) or 'ATC'
    route: str = ""
    source: str = ""
