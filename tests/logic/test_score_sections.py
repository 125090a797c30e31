"""The six score sections together: contract keys of the assessment JSON, strict JSON
(no NaN/Infinity), and an empty patient giving null / not determinable everywhere."""
import json

import pytest
from score_helpers import DEFAULT, m, pin

from cds_service.logic import anthropometrics, d_dimer, dic, renal, sic, sofa
from cds_service.logic.inputs import DDimer, ProthrombinTime, RespiratorySupport, Vasoactive

KEYS = {
    "anthropometrics": {"weight_kg", "height_cm", "bmi", "ibw_kg", "adjbw_kg"},
    "renal": {"creatinine_mg_dL", "crcl_ml_min", "crcl_weight_basis", "crcl_lt_30"},
    "d_dimer": {"determinable", "basis", "multiple_of_uln", "gt_6x_uln", "dic_points"},
    "sofa": {"respiratory", "cardiovascular", "hepatic", "renal", "coagulation", "cns",
             "sofa4", "sofa4_complete"},
    "sic": {"platelet_points", "inr_points", "sofa_points", "total", "determinable", "positive"},
    "isth_dic": {"platelet_points", "d_dimer_points", "pt_points", "fibrinogen_points", "total",
                 "determinable", "overt"},
}


def sections(inputs):
    a = anthropometrics.compute(inputs, DEFAULT)
    r = renal.compute(inputs, a, DEFAULT)
    d = d_dimer.compute(inputs, DEFAULT)
    s = sofa.compute(inputs, DEFAULT)
    return {"anthropometrics": a.to_json(), "renal": r.to_json(), "d_dimer": d.to_json(),
            "sofa": s.to_json(), "sic": sic.compute(inputs.platelets, inputs.inr, s, DEFAULT).to_json(),
            "isth_dic": dic.compute(inputs, d, DEFAULT).to_json()}


SICK = pin(
    age_years=71, sex="female", weight=m(58.0, "kg"), height=m(160.0, "cm"),
    creatinine=m(2.6, "mg/dL", ">"), bilirubin=m(40 / 17.1, "mg/dL", reported_value=40, reported_unit="umol/L"),
    d_dimer=DDimer(m(20, "mg/L", ">"), basis_from_code="FEU"), platelets=m(45), inr=m(1.6),
    pt=ProthrombinTime(m(19.5, "s"), reference_high_s=13.0), fibrinogen=m(0.8),
    pf_ratio=m(90), respiratory=RespiratorySupport(modalities=frozenset({"IMV"})),
    vasoactives=(Vasoactive("norepinephrine", None),), gcs=m(7), urine_output_24h=m(180))


@pytest.mark.parametrize("inputs", [pin(), SICK], ids=["empty", "sick"])
def test_contract_keys_and_strict_json(inputs):
    out = sections(inputs)
    for name, keys in KEYS.items():
        assert keys <= set(out[name]), name
    json.dumps(out, allow_nan=False)


def test_empty_patient_is_null_everywhere():
    out = sections(pin())
    for name, keys in KEYS.items():
        for key in keys - {"determinable", "sofa4_complete"}:
            assert out[name][key] is None, (name, key)
    assert out["d_dimer"]["determinable"] is False
    assert out["sic"]["determinable"] is False and out["isth_dic"]["determinable"] is False
    assert out["sofa"]["sofa4_complete"] is False


def test_sick_patient_by_hand():
    out = sections(SICK)
    # hepatic: 40 umol/L on SI bands 33-<102 -> 2; renal: urine 180 < 200 -> 4 whatever the
    # bounded creatinine; respiratory: 90 on IMV -> 4; cardiovascular: norepinephrine at an
    # unknown rate -> null, bound 3; CNS GCS 7 -> 3; coagulation 45 -> 3.
    s = out["sofa"]
    assert (s["respiratory"], s["cardiovascular"], s["hepatic"], s["renal"], s["coagulation"],
            s["cns"]) == (4, None, 2, 4, 3, 3)
    assert s["sofa4"] is None and s["sofa4_lower_bound"] == 13
    # SIC: platelets 45 -> 2, INR 1.6 -> 2, S >= 2 -> 2: total 6, positive
    assert (out["sic"]["total"], out["sic"]["positive"]) == (6, True)
    # DIC: platelets 45 -> 2, D-dimer > 40x -> 3, PT 6.5 s above 13 -> 2, fibrinogen 0.8 -> 1
    assert (out["isth_dic"]["total"], out["isth_dic"]["overt"]) == (8, True)
    # CrCl: SCr > 2.6; IBW female 160 cm = 45.5 + 7.6 x 2.3/2.54 = 52.38; 58 <= 1.2 x IBW
    # -> ideal. CrCl < 69 x 52.382 / (72 x 2.6) x 0.85 = 16.41 -> crcl_lt_30 true
    assert out["renal"]["crcl_lt_30"] is True and out["renal"]["crcl_ml_min"] is None
    assert out["renal"]["crcl_weight_basis"] == "ideal"
    assert out["d_dimer"]["gt_6x_uln"] is True and out["d_dimer"]["multiple_of_uln"] is None
