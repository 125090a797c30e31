"""Seed trigger (§8) and the card evidence note (§13)."""
import math

import pytest

from cds_service.logic.evidence import evidence_note, seed_trigger
from cds_service.logic.policy import Policy

P = Policy.default()


@pytest.mark.parametrize("sic, dd, triggered, reasons", [
    (True, True, True, ("sic_positive", "d_dimer_gt_6x_uln")),
    (True, None, True, ("sic_positive",)),
    (None, True, True, ("d_dimer_gt_6x_uln",)),
    (False, True, True, ("d_dimer_gt_6x_uln",)),
    (False, False, False, ()),
    (False, None, None, ()),
    (None, False, None, ()),
    (None, None, None, ()),
])
def test_seed_trigger(sic, dd, triggered, reasons):
    result = seed_trigger(sic, dd)
    assert (result.triggered, result.reasons) == (triggered, reasons)


WARD = dict(contraindications=(), already_therapeutic=False, critically_ill=False,
            oxygen="low-flow", d_dimer_multiple_range=(2.0, 2.0), cautions=(), crcl_lt_30=False)


def note(policy=P, **kw):
    return evidence_note(**{**WARD, **kw}, policy=policy)


@pytest.mark.parametrize("kw, code", [
    (dict(contraindications=("active_bleeding",), critically_ill=True), "not_applicable"),
    (dict(already_therapeutic=True, critically_ill=None), "not_applicable"),
    (dict(critically_ill=True, oxygen="IMV"), "critically_ill_prophylactic_only"),
    (dict(critically_ill=True, cautions=("platelets_lt_50",)), "critically_ill_prophylactic_only"),
    (dict(), "therapeutic_option"),
    (dict(d_dimer_multiple_range=(1.0, 1.0)), "prophylactic"),             # not > 1.0
    (dict(d_dimer_multiple_range=(1.000001, 1.000001)), "therapeutic_option"),
    (dict(d_dimer_multiple_range=(1.0000001, 1.0000001)), "prophylactic"),  # 1.000000 at 6 dp
    (dict(d_dimer_multiple_range=(0.8, math.inf)), "prophylactic"),        # bound not settled
    (dict(d_dimer_multiple_range=(1.2, math.inf)), "therapeutic_option"),  # "> x" settles it
    (dict(d_dimer_multiple_range=(0.0, 0.9)), "prophylactic"),
    (dict(d_dimer_multiple_range=None), "prophylactic"),                   # undeterminable
    (dict(oxygen="none"), "prophylactic"),
    (dict(cautions=("hemoglobin_lt_8",)), "escalation_blocked"),
    (dict(cautions=("platelets_lt_50", "recent_bleeding"), oxygen="none"), "escalation_blocked"),
    (dict(critically_ill=None, oxygen=None), "severity_unknown"),
])
def test_rows(kw, code):
    assert note(**kw).code == code


def test_details():
    assert note().therapeutic_hint == "enoxaparin_1_mg_kg_q12h"
    assert note(crcl_lt_30=True).therapeutic_hint == "local_protocol"
    assert note(crcl_lt_30=None).therapeutic_hint == "local_protocol"
    blocked = note(cautions=("platelets_lt_50", "dual_antiplatelet_therapy"))
    assert blocked.blocking_cautions == ("platelets_lt_50", "dual_antiplatelet_therapy")
    assert blocked.therapeutic_hint is None


def test_escalation_policy_keys():
    off = P.with_overrides({"escalation.enabled": False})
    assert note(off).code == "prophylactic"
    assert note(off, cautions=("hemoglobin_lt_8",)).code == "escalation_blocked"
    any_oxygen = P.with_overrides({"escalation.require_low_flow": False})
    assert note(any_oxygen, oxygen="none").code == "therapeutic_option"
    assert note(any_oxygen, oxygen=None).code == "therapeutic_option"
    higher = P.with_overrides({"escalation.d_dimer_multiple": 2.0})
    assert note(higher, d_dimer_multiple_range=(2.0, 2.0)).code == "prophylactic"
    assert note(higher, d_dimer_multiple_range=(2.1, 2.1)).code == "therapeutic_option"


def test_unchecked_bleeding_caution_withholds_the_therapeutic_option():
    # No platelet count or Hb in the window: "no caution" is not known, so the therapeutic
    # option (which needs no caution, §13 / NIH 2022) is not offered; a known caution still wins.
    unchecked = ("platelets_lt_50", "hemoglobin_lt_8")
    result = note(unchecked_cautions=unchecked)
    assert (result.code, result.unchecked_cautions) == ("prophylactic", unchecked)
    assert note(unchecked_cautions=unchecked, cautions=("dual_antiplatelet_therapy",)).code == "escalation_blocked"
    assert note(unchecked_cautions=unchecked, critically_ill=True).code == "critically_ill_prophylactic_only"
    assert note(unchecked_cautions=unchecked, oxygen="none").unchecked_cautions == ()
