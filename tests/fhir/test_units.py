"""Unit normalisation (fhir/units.py): every accepted unit of every input, unknown units and
absurd values refused with a reason. Expected values are the conversions of clinical rules §14."""
from __future__ import annotations

import pytest

from cds_service.fhir.units import (DOSE_UNITS, RATE_ABSOLUTE, RATE_PER_KG, UnitError, convert,
                                    read_unit)

UCUM = "http://unitsofmeasure.org"


def ucum(value, code, **kw):
    return {"value": value, "system": UCUM, "code": code, **kw}


def text(value, unit):
    return {"value": value, "unit": unit}


# (input, quantity, expected canonical value)
VARIANTS = [
    # D-dimer -> mg/L: ng/mL and ug/L /1000; ug/mL and mg/L x1; mg/dL x10
    ("d_dimer", ucum(1500, "ng/mL"), 1.5),
    ("d_dimer", ucum(1500, "ug/L"), 1.5),
    ("d_dimer", ucum(1.5, "ug/mL"), 1.5),
    ("d_dimer", ucum(1.5, "mg/L"), 1.5),
    ("d_dimer", ucum(0.15, "mg/dL"), 1.5),
    ("d_dimer", ucum(1500, "ng/mL{FEU}"), 1.5),
    ("d_dimer", ucum(750, "ng/mL{DDU}"), 0.75),
    ("d_dimer", text(1500, "ng/ml"), 1.5),
    ("d_dimer", text(1.5, "µg/mL"), 1.5),
    ("d_dimer", text(1.5, "mg/L FEU"), 1.5),
    # Platelets -> 10^9/L
    ("platelets", ucum(150, "10*3/uL"), 150),
    ("platelets", ucum(150, "10*9/L"), 150),
    ("platelets", ucum(150, "10*3/mm3"), 150),
    ("platelets", ucum(150000, "/uL"), 150),
    ("platelets", ucum(150000, "/mm3"), 150),
    ("platelets", text(150, "K/uL"), 150),
    ("platelets", text(150, "k/µl"), 150),
    ("platelets", text(150, "10^9/L"), 150),
    ("platelets", ucum(150, "10*3/ul"), 150),     # UCUM l == L (litre)
    # INR
    ("inr", ucum(1.3, "{INR}"), 1.3),
    ("inr", ucum(1.3, "{ratio}"), 1.3),
    ("inr", ucum(1.3, "1"), 1.3),
    ("inr", {"value": 1.3}, 1.3),
    # PT seconds
    ("pt", ucum(14.2, "s"), 14.2),
    # Fibrinogen -> g/L: mg/dL / 100
    ("fibrinogen", ucum(2.5, "g/L"), 2.5),
    ("fibrinogen", ucum(250, "mg/dL"), 2.5),
    # Creatinine -> mg/dL: umol/L / 88.4; mmol/L x1000 / 88.4
    ("creatinine", ucum(1.5, "mg/dL"), 1.5),
    ("creatinine", ucum(176.8, "umol/L"), 2.0),
    ("creatinine", ucum(0.1768, "mmol/L"), 2.0),
    ("creatinine", text(176.8, "µmol/l"), 2.0),
    # Bilirubin -> mg/dL: umol/L / 17.1
    ("bilirubin", ucum(1.2, "mg/dL"), 1.2),
    ("bilirubin", ucum(34.2, "umol/L"), 2.0),
    # Haemoglobin -> g/dL: g/L / 10; mmol/L x 1.611
    ("hemoglobin", ucum(9.5, "g/dL"), 9.5),
    ("hemoglobin", ucum(95, "g/L"), 9.5),
    ("hemoglobin", ucum(5, "mmol/L"), 8.055),
    # Anti-Xa IU/mL
    ("anti_xa", ucum(0.4, "[IU]/mL"), 0.4),
    ("anti_xa", ucum(0.4, "[iU]/mL"), 0.4),
    ("anti_xa", ucum(0.4, "U/mL"), 0.4),
    ("anti_xa", text(0.4, "IU/mL"), 0.4),
    # Pressures -> mmHg: kPa x 7.50062
    ("pao2", ucum(80, "mm[Hg]"), 80),
    ("pao2", ucum(10, "kPa"), 75.0062),
    ("pf_ratio", ucum(250, "mm[Hg]"), 250),
    ("pf_ratio", ucum(40, "kPa"), 300.0248),
    ("map", ucum(65, "mm[Hg]"), 65),
    # FiO2 -> fraction: % / 100; unitless > 1 taken as %
    ("fio2", ucum(40, "%"), 0.4),
    ("fio2", ucum(0.4, "1"), 0.4),
    ("fio2", ucum(0.4, "{fraction}"), 0.4),
    ("fio2", {"value": 0.4}, 0.4),
    ("fio2", {"value": 40}, 0.4),
    ("fio2", ucum(60, "1"), 0.6),
    ("fio2", ucum(1, "1"), 1.0),
    ("fio2", ucum(21, "%"), 0.21),
    ("fio2", ucum(20.9, "%"), 0.209),                   # v2: room air charted as 20.9 %
    ("fio2", ucum(20, "%"), 0.20),                      # v2: the 0.20 floor is inside
    ("fio2", ucum(0.2, "1"), 0.20),
    # GCS, scores
    ("gcs", ucum(14, "{score}"), 14),
    ("gcs", ucum(14, "1"), 14),
    ("gcs", {"value": 3}, 3),
    ("sofa_subscore", ucum(2, "{score}"), 2),
    ("sofa_subscore", {"value": 0}, 0),
    ("sofa_total", ucum(11, "{score}"), 11),
    # Urine -> mL/24 h: L x 1000
    ("urine_output_24h", ucum(450, "mL"), 450),
    ("urine_output_24h", ucum(450, "mL/(24.h)"), 450),
    ("urine_output_24h", ucum(450, "mL/d"), 450),
    ("urine_output_24h", ucum(0.45, "L"), 450),
    # Weight -> kg: g / 1000; lb x 0.45359237
    ("weight", ucum(80, "kg"), 80),
    ("weight", ucum(80000, "g"), 80),
    ("weight", ucum(200, "[lb_av]"), 90.718474),
    # Height -> cm: m x 100; in x 2.54
    ("height", ucum(170, "cm"), 170),
    ("height", ucum(1.7, "m"), 170),
    ("height", ucum(70, "[in_i]"), 177.8),
    # Recorded BMI
    ("recorded_bmi", ucum(31.2, "kg/m2"), 31.2),
]


@pytest.mark.parametrize("name,quantity,expected", VARIANTS,
                         ids=[f"{v[0]}-{v[1].get('code', v[1].get('unit', 'none'))}-{v[1]['value']}"
                              for v in VARIANTS])
def test_every_accepted_unit_converts(name, quantity, expected):
    assert convert(name, quantity).value == pytest.approx(expected, rel=1e-9)


def test_text_units_are_case_insensitive_but_ucum_codes_are_not():
    assert convert("fibrinogen", text(250, "MG/DL")).value == pytest.approx(2.5)
    with pytest.raises(UnitError):
        convert("fibrinogen", ucum(250, "MG/DL"))      # UCUM: M is the mega prefix


def test_ucum_code_wins_over_unit_text():
    q = {"value": 176.8, "system": UCUM, "code": "umol/L", "unit": "mg/dL"}
    assert convert("creatinine", q).value == pytest.approx(2.0)


def test_non_ucum_system_uses_unit_text():
    q = {"value": 176.8, "system": "http://example.org/units", "code": "X1", "unit": "umol/L"}
    assert convert("creatinine", q).value == pytest.approx(2.0)
    assert read_unit(q) == ("umol/L", False)


@pytest.mark.parametrize("quantity,basis", [
    (ucum(1.0, "mg/L{FEU}"), "FEU"),
    (ucum(1.0, "ug/mL{DDU}"), "DDU"),
    (ucum(1.0, "mg/L"), None),
    ({"value": 1.0, "system": UCUM, "code": "mg/L", "unit": "mg/L FEU"}, "FEU"),
    (text(1.0, "ng/mL (DDU)"), "DDU"),
    (text(1.0, "ug/mL FEU"), "FEU"),
])
def test_d_dimer_basis_from_unit(quantity, basis):
    assert convert("d_dimer", quantity).basis == basis


def test_d_dimer_unit_naming_both_bases_is_refused():
    with pytest.raises(UnitError, match="both FEU and DDU"):
        convert("d_dimer", ucum(1.0, "mg/L{FEU}{DDU}"))


def test_si_creatinine_and_bilirubin_keep_the_reported_unit():
    c = convert("creatinine", ucum(176.8, "umol/L"))
    assert (c.reported_value, c.reported_unit) == (176.8, "umol/L")
    mmol = convert("creatinine", ucum(0.1768, "mmol/L"))
    assert mmol.reported_unit == "umol/L" and mmol.reported_value == pytest.approx(176.8)
    b = convert("bilirubin", text(34.2, "µmol/L"))
    assert (b.reported_value, b.reported_unit) == (34.2, "umol/L")


def test_comparator_is_kept():
    c = convert("d_dimer", ucum(20, "mg/L", comparator=">"))
    assert (c.value, c.comparator) == (20, ">")


@pytest.mark.parametrize("name,quantity", [
    ("d_dimer", ucum(1.0, "mg/mL")),
    ("d_dimer", text(1.0, "FEU")),
    ("platelets", text(150, "10^3/uL")),       # not in the accepted list
    ("platelets", ucum(150, "%")),
    ("inr", ucum(1.2, "s")),
    ("pt", text(14, "sec")),
    ("fibrinogen", ucum(2.5, "mg/L")),
    ("creatinine", ucum(1.2, "mg/L")),
    ("bilirubin", ucum(1.2, "mmol/L")),
    ("hemoglobin", ucum(9, "mg/dL")),
    ("pao2", text(80, "mmHg")),
    ("pao2", {"value": 80}),
    ("fio2", ucum(40, "mL")),
    ("gcs", ucum(14, "%")),
    ("urine_output_24h", ucum(450, "mL/h")),
    ("weight", text(180, "lbs")),
    ("height", ucum(5.8, "[ft_i]")),
    ("anti_xa", ucum(0.4, "ng/mL")),
])
def test_unknown_unit_is_refused_with_reason(name, quantity):
    with pytest.raises(UnitError, match="not an accepted unit"):
        convert(name, quantity)


@pytest.mark.parametrize("name,quantity,fragment", [
    ("platelets", ucum(-1, "10*9/L"), "not plausible"),
    ("platelets", ucum(2001, "10*9/L"), "not plausible"),
    ("platelets", ucum(2001000, "/uL"), "not plausible"),
    ("fio2", ucum(19.9, "%"), "not plausible"),       # v2: the floor is 0.20 (room air 20.9 %)
    ("fio2", ucum(0.199, "1"), "not plausible"),
    ("fio2", ucum(101, "%"), "not plausible"),
    ("fio2", ucum(0.5, "%"), "not plausible"),           # 0.005 as a fraction
    ("gcs", ucum(2, "{score}"), "not plausible"),
    ("gcs", ucum(16, "{score}"), "not plausible"),
    ("gcs", ucum(13.5, "{score}"), "whole number"),
    ("sofa_subscore", ucum(5, "{score}"), "not plausible"),
    ("weight", ucum(0, "kg"), "not plausible"),
    ("weight", ucum(701, "kg"), "not plausible"),
    ("height", ucum(29, "cm"), "not plausible"),
    ("height", ucum(2.76, "m"), "not plausible"),
    ("creatinine", ucum(0, "mg/dL"), "not plausible"),
    ("d_dimer", ucum(-0.1, "mg/L"), "not plausible"),
    ("inr", ucum(0, "{INR}"), "not plausible"),
    ("hemoglobin", ucum(-3, "g/dL"), "not plausible"),
    ("urine_output_24h", ucum(-1, "mL"), "not plausible"),
])
def test_absurd_values_are_refused(name, quantity, fragment):
    with pytest.raises(UnitError, match=fragment):
        convert(name, quantity)


@pytest.mark.parametrize("name,quantity,expected", [
    ("platelets", ucum(2000, "10*9/L"), 2000),      # upper edge inside
    ("platelets", ucum(0, "10*9/L"), 0),
    ("weight", ucum(700, "kg"), 700),
    ("height", ucum(30, "cm"), 30),
    ("height", ucum(275, "cm"), 275),
    ("gcs", ucum(15, "{score}"), 15),
    ("fio2", ucum(100, "%"), 1.0),
])
def test_plausibility_edges_are_inside(name, quantity, expected):
    assert convert(name, quantity).value == pytest.approx(expected)


@pytest.mark.parametrize("quantity,reason", [
    ({"unit": "mg/L"}, "missing or not a number"),
    ({"value": "1.5", "unit": "mg/L"}, "missing or not a number"),
    ({"value": True, "unit": "mg/L"}, "missing or not a number"),
    (None, "no valueQuantity"),
    ({"value": 1.5, "unit": "mg/L", "comparator": "ad"}, "comparator"),
])
def test_malformed_quantities(quantity, reason):
    with pytest.raises(UnitError, match=reason):
        convert("d_dimer", quantity)


@pytest.mark.parametrize("quantity,expected", [
    (ucum(0.1, "ug/kg/min"), 0.1),
    (ucum(0.1, "ug/(kg.min)"), 0.1),
    (ucum(0.006, "mg/kg/h"), 0.1),     # 0.006 x 1000 / 60
    (ucum(6, "ug/kg/h"), 0.1),         # 6 / 60
])
def test_vasoactive_rates_per_kg(quantity, expected):
    assert convert("rate", quantity, table=RATE_PER_KG).value == pytest.approx(expected)


@pytest.mark.parametrize("quantity,expected", [
    (ucum(8, "ug/min"), 8),
    (ucum(0.48, "mg/h"), 8),           # 0.48 x 1000 / 60
])
def test_vasoactive_rates_per_minute(quantity, expected):
    assert convert("rate", quantity, table=RATE_ABSOLUTE).value == pytest.approx(expected)


@pytest.mark.parametrize("quantity", [ucum(5000, "[iU]"), ucum(5000, "[IU]"), ucum(5000, "U"),
                                      text(5000, "units"), text(5000, "IU"), text(5000, "Units")])
def test_heparin_dose_units(quantity):
    assert convert("dose", quantity, table=DOSE_UNITS).value == 5000
