"""Oxygen modality and critical illness (clinical-rules.md §9)."""
import pytest

from cds_service.logic.critical import critical_illness, oxygen_modality
from cds_service.logic.inputs import RespiratorySupport, Vasoactive
from cds_service.logic.policy import Policy

P = Policy.default()


def support(*modalities, **kw):
    return RespiratorySupport(modalities=frozenset(modalities), **kw)


@pytest.mark.parametrize("modalities, room_air, expected", [
    (("IMV", "low-flow"), False, "IMV"),
    (("IMV", "NIV", "HFNC"), False, "IMV"),
    (("NIV",), False, "NIV"),
    (("CPAP",), False, "NIV"),            # CPAP is reported as NIV
    (("CPAP", "HFNC"), False, "NIV"),
    (("HFNC", "low-flow"), False, "HFNC"),
    (("low-flow",), False, "low-flow"),
    (("low-flow",), True, "low-flow"),    # a support record outranks room air
    ((), True, "none"),                   # "none" only on explicit room air
    ((), False, None),                    # nothing recorded: unknown, not "none"
])
def test_oxygen_modality(modalities, room_air, expected):
    assert oxygen_modality(support(*modalities, room_air_documented=room_air)) == expected


NOREPI = Vasoactive("norepinephrine", 0.05)


@pytest.mark.parametrize("resp, vasos, expected, oxygen, criteria", [
    (support("IMV"), (), True, "IMV", ("IMV",)),
    (support("NIV"), (), True, "NIV", ("NIV",)),
    (support("CPAP"), (), True, "NIV", ("CPAP",)),
    (support("HFNC"), (), True, "HFNC", ("HFNC",)),
    (support(ecmo=True), (), True, None, ("ECMO",)),            # ECMO does not set oxygen
    (support("low-flow"), (NOREPI,), True, "low-flow", ("vasoactive:norepinephrine",)),
    (support(), (Vasoactive("vasopressin"),), True, None, ("vasoactive:vasopressin",)),
    (support("low-flow", vasopressor_procedure=True), (), True, "low-flow",
     ("vasopressor_procedure",)),
    # a vasopressor counts however short (the 60-min rule is SOFA's)
    (support("low-flow"), (Vasoactive("norepinephrine", meets_min_duration=False),), True,
     "low-flow", ("vasoactive:norepinephrine",)),
    (support("low-flow"), (), False, "low-flow", ()),
    (support(room_air_documented=True), (), False, "none", ()),
    (support(), (), None, None, ()),
])
def test_critically_ill(resp, vasos, expected, oxygen, criteria):
    result = critical_illness(resp, vasos, P)
    assert (result.critically_ill, result.oxygen, result.criteria) == (expected, oxygen, criteria)


def test_several_criteria_are_listed_in_a_stable_order():
    vasos = (Vasoactive("norepinephrine"), Vasoactive("epinephrine"), Vasoactive("norepinephrine"))
    result = critical_illness(support("HFNC", "IMV", ecmo=True), vasos, P)
    assert result.criteria == ("IMV", "HFNC", "ECMO", "vasoactive:epinephrine",
                               "vasoactive:norepinephrine")


def test_vasoactive_counts_false():
    p = P.with_overrides({"critical.vasoactive_counts": False})
    assert critical_illness(support("low-flow"), (NOREPI,), p).critically_ill is False
    # no oxygen record and the vasopressor does not count: unknown
    assert critical_illness(support(), (NOREPI,), p).critically_ill is None
    assert critical_illness(support(vasopressor_procedure=True), (), p).critically_ill is None


def test_critical_modalities_override():
    p = P.with_overrides({"critical.modalities": ["IMV", "NIV", "CPAP", "ECMO"]})
    # HFNC no longer makes the patient critically ill; oxygen is known, so the answer is false
    result = critical_illness(support("HFNC"), (), p)
    assert (result.critically_ill, result.oxygen) == (False, "HFNC")
    # ECMO dropped from the list: ECMO alone, no oxygen record, is unknown
    p2 = P.with_overrides({"critical.modalities": ["IMV", "NIV", "CPAP", "HFNC"]})
    assert critical_illness(support(ecmo=True), (), p2).critically_ill is None
