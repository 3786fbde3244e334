"""RxNorm/ATC codes and free text -> drug concepts and ingredients, with the reference's safety rules."""

from __future__ import annotations

import pytest

RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"


def roles(concept):
    return {(i.name, i.role, i.drug_class) for i in concept.ingredients}


def test_product_scd_maps_to_ingredient(terminology):
    c = terminology.drug_by_code(RX, "312941")
    assert c.display == "sertraline 50 MG Oral Tablet"
    assert c.tty == "SCD"
    assert roles(c) == {("sertraline", "aggravator", "ssri")}
    [ing] = c.ingredients
    assert (ing.rxcui, ing.indicator, ing.cause) == ("36437", "warning", "drug_induced")
    # The substitute comes with its label contraindications: the card must not offer it blindly.
    assert ing.alternative.startswith("bupropion (not with a seizure disorder")


@pytest.mark.parametrize(
    ("code", "tty", "ingredient"),
    [
        ("328670", "SCDC", "sertraline"),  # Synthea uses SCDC codes
        ("406022", "SCDC", "fluoxetine"),
        ("208161", "SBD", "sertraline"),  # Zoloft
        ("866414", "SBD", "metoprolol"),  # Toprol
        ("36437", "IN", "sertraline"),
        ("1362", "PIN", "diphenhydramine hydrochloride"),
    ],
)
def test_product_level_codes(terminology, code, tty, ingredient):
    for system in (RX, "urn:oid:2.16.840.1.113883.6.88", "rxnorm"):
        c = terminology.drug_by_code(system, code)
        assert c.tty == tty
        assert [i.name for i in c.ingredients] == [ingredient]
        assert all(i.role == "aggravator" for i in c.ingredients)


@pytest.mark.parametrize(
    "code", ["310430", "310432", "25480", "1101333", "1482820", "1101338", "1101339", "187832", "483442"]
)
def test_gabapentinoids_are_treatments_never_aggravators(terminology, code):
    c = terminology.drug_by_code(RX, code)
    assert {(i.role, i.drug_class) for i in c.ingredients} == {("rls_treatment", "gabapentinoid")}
    assert c.ingredients[0].cause is None


def test_gabapentin_enacarbil_pin_maps_to_gabapentin(terminology):
    pin = terminology.ingredient("1101333")
    assert (pin.tty, pin.base_rxcui, pin.name) == ("PIN", "25480", "gabapentin enacarbil")
    assert terminology.ingredient("1362").base_rxcui == "3498"


@pytest.mark.parametrize("code", ["42347", "993541", "993691", "993511"])
def test_bupropion_is_the_alternative(terminology, code):
    c = terminology.drug_by_code(RX, code)
    assert {(i.name, i.role) for i in c.ingredients} == {("bupropion", "alternative")}


def test_no_safe_drug_is_ever_an_aggravator(terminology):
    safe = set(
        [
            "gabapentin",
            "gabapentin enacarbil",
            "pregabalin",
            "bupropion",
            "loratadine",
            "fexofenadine",
            "cetirizine",
            "desloratadine",
            "levocetirizine",
            "ondansetron",
            "trazodone",
            "nefazodone",
            "pramipexole",
            "ropinirole",
            "rotigotine",
            "levodopa",
            "carbidopa",
            "ferrous sulfate",
            "clonazepam",
        ]
    )
    by_name = {i.name: i for i in terminology.ingredients}
    assert safe <= set(by_name)
    assert all(by_name[n].role != "aggravator" for n in safe)
    assert by_name["trazodone"].role == "insufficient_evidence"
    assert by_name["clonazepam"].role == "withdrawal"  # only a recent stop counts, never an active order


def test_lithium_has_three_ingredients(terminology):
    for code in ("6448", "42351", "52105", "197890", "756059"):
        [ing] = terminology.drug_by_code(RX, code).ingredients
        assert (ing.drug_class, ing.role) == ("lithium", "aggravator")


def test_classes_curated_by_ingredient(terminology):
    assert terminology.ingredient("5553").drug_class == "sedating_antihistamine"  # hydroxyzine (ATC N05BB01)
    assert terminology.ingredient("6915").drug_class == "antiemetic_d2"  # metoclopramide (ATC A03FA01)
    assert terminology.ingredient("8704").drug_class == "antiemetic_d2"  # prochlorperazine
    assert terminology.ingredient("15996").drug_class == "mirtazapine"
    assert terminology.ingredient("3638").indicator == "info"  # doxepin overrides the TCA default
    assert terminology.ingredient("704").indicator == "warning"


def test_combination_product_lists_aggravating_ingredient(terminology):
    c = terminology.drug_by_code(RX, "1043400")
    assert ("doxylamine", "aggravator", "sedating_antihistamine") in roles(c)
    carbidopa_levodopa = terminology.drug_by_code(RX, "197444")
    assert {i.name for i in carbidopa_levodopa.ingredients} == {"carbidopa", "levodopa"}
    assert all(i.role == "rls_treatment" for i in carbidopa_levodopa.ingredients)


def test_withdrawal_flags(terminology):
    imipramine = terminology.ingredient("5691")
    assert (imipramine.role, imipramine.withdrawal) == ("aggravator", True)
    for rxcui in ("5470", "6984", "2598", "39993"):
        ing = terminology.ingredient(rxcui)
        assert (ing.role, ing.withdrawal, ing.cause) == ("withdrawal", True, "drug_withdrawal")
    assert terminology.ingredient("36437").withdrawal is False


def test_atc_substance_codes_map_and_classes_do_not(terminology):
    assert [i.name for i in terminology.drug_by_code(ATC, "N06AB06").ingredients] == ["sertraline"]
    assert {i.name for i in terminology.drug_by_code(ATC, "N05AN01").ingredients} == {
        "lithium",
        "lithium carbonate",
        "lithium citrate",
    }
    assert terminology.drug_by_code(ATC, "n02bf01").ingredients[0].role == "rls_treatment"
    for class_code in ("N06A", "N05A", "R06A", "N03A", "N03AX12"):
        assert terminology.drug_by_code(ATC, class_code) is None


@pytest.mark.parametrize(
    ("code", "route"),
    [("D04AA32", "topical"), ("D04AX01", "topical"), ("S01ED01", "ophthalmic"), ("S01GX12", "ophthalmic")],
)
def test_atc_codes_of_local_use_groups_carry_their_route(terminology, code, route):
    """D04AA32 is diphenhydramine for topical use, S01ED01 timolol eye drops: routes.csv's ATC groups."""
    drug = terminology.drug_by_code(ATC, code)
    assert (drug.route, drug.route_excluded) == (route, True)
    systemic = {"D04AA32": "R06AA02", "D04AX01": "N06AA12", "S01ED01": "C07AA06", "S01GX12": "R06AE07"}[code]
    same = terminology.drug_by_code(ATC, systemic)
    assert same.ingredients == drug.ingredients and (same.route, same.route_excluded) == ("", False)


def test_unknown_codes(terminology):
    assert terminology.drug_by_code(RX, "999999999") is None
    assert terminology.drug_by_code("http://hl7.org/fhir/sid/ndc", "50580-506-02") is None
    assert terminology.drug_by_code(RX, None) is None
    assert terminology.ingredient("999") is None
    assert terminology.ingredient(None) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Zoloft 50 mg tab", ["sertraline"]),
        ("SERTRALINE HCL 50MG", ["sertraline"]),
        ("Tylenol PM Extra Strength caplet", ["diphenhydramine"]),
        ("Lithium carbonate 300 MG Oral Capsule", ["lithium carbonate"]),
        ("lithium 300mg", ["lithium"]),
        ("gabapentin enacarbil 600 MG ER tablet", ["gabapentin enacarbil"]),
        ("Horizant 600 mg", ["gabapentin enacarbil"]),
        ("acetaminophen / diphenhydramine hydrochloride oral tablet", ["diphenhydramine hydrochloride"]),
        ("chlorphenamine 4 mg", ["chlorpheniramine"]),
        ("Sinemet 25/100", ["levodopa", "carbidopa"]),
        ("sertraline and  trazodone at night", ["sertraline", "trazodone"]),
        ("2 ML iron-dextran complex 50 MG/ML Injection", ["iron-dextran complex"]),
        ("Zoloft(sertraline)50mg", ["sertraline"]),
        ("diphenhydramine\nhydrochloride 25 MG", ["diphenhydramine hydrochloride"]),
    ],
)
def test_drug_by_text_finds_names_and_brands(terminology, text, expected):
    assert [i.name for i in terminology.drug_by_text(text)] == expected


@pytest.mark.parametrize(
    "text",
    [
        "dilithium crystals",
        "lithiumion battery",
        "prozaction plan",
        "ironic",
        "",
        None,
        "vitamin D 1000 unit",
    ],
)
def test_drug_by_text_needs_whole_words(terminology, text):
    assert terminology.drug_by_text(text) == []


def test_route_words(terminology):
    assert terminology.route_of_text("diphenhydramine 2 % Topical Cream") == ("topical", True)
    assert terminology.route_excluded_text("timolol 0.5 % Ophthalmic Solution")
    assert not terminology.route_excluded_text("24 HR rotigotine 0.125 MG/HR Transdermal System")
    assert not terminology.route_excluded_text("propranolol 40 MG Oral Tablet")
    assert terminology.route_of_text("sertraline 50 mg") is None
    sct = "http://snomed.info/sct"
    assert terminology.route_of_code(sct, "54485002") == ("ophthalmic", True)
    assert terminology.route_of_code(sct, "6064005") == ("topical", True)
    assert terminology.route_of_code(sct, "45890007") == ("transdermal", False)  # patches are systemic
    assert terminology.route_of_code(sct, "26643006") == ("oral", False)
    assert terminology.route_of_code("http://loinc.org", "6064005") is None


def test_objects_are_hashable(terminology):
    concept = terminology.drug_by_code(RX, "312941")
    assert len({concept, concept, *concept.ingredients}) == 2
    assert isinstance(concept.ingredients, tuple)


def test_vsac_product_codes(terminology):
    """Product codes taken from VSAC medication value sets map to their tabled ingredients."""
    olanzapine_fluoxetine = terminology.drug_by_code(RX, "403969")
    assert {(i.name, i.drug_class) for i in olanzapine_fluoxetine.ingredients} == {
        ("fluoxetine", "ssri"),
        ("olanzapine", "atypical_antipsychotic"),
    }
    assert [i.name for i in terminology.drug_by_code(RX, "856769").ingredients] == ["amitriptyline"]
    assert terminology.drug_by_code(RX, "993550").ingredients[0].role == "alternative"  # bupropion HBr
    assert terminology.drug_by_code(RX, "866412").ingredients[0].drug_class == "beta_blocker"
    assert terminology.drug_by_code(RX, "859981").route == "sublingual"
    assert len(terminology.products) > 400


@pytest.mark.parametrize(
    ("code", "alternative"),
    [
        ("995624", None),  # meclizine (vertigo): alternative 'none' overrides the class's antihistamines
        ("198602", None),  # dimenhydrinate (motion sickness)
        ("966787", None),  # doxepin 3 mg (hypnotic): not bupropion
        ("1363309", "a non-sedating antihistamine (loratadine, fexofenadine or cetirizine)"),  # the class's
    ],
)
def test_an_ingredient_can_name_no_substitute_where_its_class_does(terminology, code, alternative):
    [ing] = terminology.drug_by_code(RX, code).ingredients
    assert ing.alternative == alternative
    assert terminology.drug_classes[ing.drug_class].alternative is not None


def test_a_salt_takes_its_ingredients_alternative_not_the_classs(terminology):
    """diphenhydramine hydrochloride (PIN 1362) is diphenhydramine: as a sleep aid (the PM products) it
    has no antihistamine substitute, whichever of the two forms the order names."""
    salt, base = terminology.ingredient("1362"), terminology.ingredient("3498")
    assert salt.name == "diphenhydramine hydrochloride" and salt.base_rxcui == base.rxcui == "3498"
    assert salt.alternative == base.alternative and "as a sleep aid" in salt.alternative
    assert salt.alternative != terminology.drug_classes["sedating_antihistamine"].alternative


def test_a_pin_row_may_still_set_its_own_values(tables):
    from rls_cds.terminology import load_terminology
    from tests.terminology.test_broken_tables import replace

    replace(
        tables,
        "medications.csv",
        "1362,PIN,diphenhydramine hydrochloride,diphenhydramine,aggravator,sedating_antihistamine,,,,",
        "1362,PIN,diphenhydramine hydrochloride,diphenhydramine,aggravator,sedating_antihistamine,weak,,"
        "cetirizine,",
    )
    salt = load_terminology(tables).ingredient("1362")
    assert (salt.strength, salt.alternative) == ("weak", "cetirizine")
