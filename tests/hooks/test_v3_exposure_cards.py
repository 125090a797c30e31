"""patient-view under clinical rules §19.4 (v3): exposure as it is given. Expected cards worked
from the rule text, through the Flask test client with full prefetch.

Base patient: example "standard-prophylaxis" (female, 62 kg, 168 cm, low-flow O2, D-dimer 0.9x
ULN, no anticoagulant): v2 shows `standard_prophylaxis` (info, enoxaparin 40 mg daily)."""
from __future__ import annotations

from hook_helpers import actions, kind, only_card, run
from v2_bodies import add_hit, platelet_history, set_lab
from v3_bodies import CRRT, ECMO, add_atc_order, add_heparin, add_procedure


def test_base_patient_gets_the_standard_prophylaxis_reminder(client):
    _, payload = run(client, "standard-prophylaxis")
    assert kind(only_card(payload)) == "standard_prophylaxis"


def test_therapeutic_heparin_infusion_whose_text_says_flush_is_exposure(client):
    """The pharmacist's case: 25,000 U/250 mL at 1,400 U/h, "flush line with NS before starting".
    v2 read a flush and suggested enoxaparin 40 mg on top (double anticoagulation). §19.4 step 1:
    a rate of 1,400 U/h is not below 50 U/h, so this is exposure: no prophylaxis reminder. The
    infusion is therapeutic, the patient not critically ill and without caution: keep_therapeutic."""
    def mutate(body):
        add_heparin(body, "hep-inf", units_per_ml=100, bag_ml=250, rate_u_h=1400,
                    text="flush line with NS before starting")
    _, payload = run(client, "standard-prophylaxis", mutate=mutate)
    assert payload["cards"] == []


def test_pressure_bag_flush_does_not_hide_the_reminder(client):
    """A heparinised pressure bag 2 U/mL x 500 mL on an arterial line, no rate: §19.4 step 2."""
    def mutate(body):
        add_heparin(body, "hep-bag", units_per_ml=2, bag_ml=500, text="arterial line pressure bag")
    _, payload = run(client, "standard-prophylaxis", mutate=mutate)
    assert kind(only_card(payload)) == "standard_prophylaxis"


def test_alteplase_catheter_clearance_never_hides_the_reminder(client):
    """ATC B01AD02 (thrombolytic enzyme) is never anticoagulant exposure (§19.4)."""
    def mutate(body):
        add_atc_order(body, "alteplase-cath", "B01AD02", "alteplase 2 mg catheter clearance")
    _, payload = run(client, "standard-prophylaxis", mutate=mutate)
    assert kind(only_card(payload)) == "standard_prophylaxis"


def test_eptifibatide_never_hides_the_reminder(client):
    def mutate(body):
        add_atc_order(body, "eptifibatide", "B01AC16", "eptifibatide infusion")
    _, payload = run(client, "standard-prophylaxis", mutate=mutate)
    assert kind(only_card(payload)) == "standard_prophylaxis"


def test_ecmo_without_a_visible_anticoagulant_gets_the_ecmo_info_card(client):
    """§19.4 ECMO guard: no prophylaxis/standard/candidate/deescalate card and no create; one info
    card `ecmo` when no anticoagulant is seen."""
    _, payload = run(client, "standard-prophylaxis", mutate=lambda b: add_procedure(b, ECMO))
    card = only_card(payload)
    assert (kind(card), card["indicator"]) == ("ecmo", "info")
    assert card["summary"] == "On ECMO: anticoagulation by the ECMO protocol"
    assert not card.get("suggestions")
    assert "ELSO 2021" in card["detail"]


def test_ecmo_heparin_for_the_circuit_is_exposure_no_enoxaparin_suggested(client):
    """The reported case: ECMO, heparin infusion "for the circuit": v2 said "no anticoagulant
    ordered: consider enoxaparin". §19.4: circuit heparin is exposure; no card at all."""
    def mutate(body):
        add_procedure(body, ECMO)
        add_heparin(body, "hep-ecmo", units_per_ml=100, bag_ml=250, rate_u_h=800, text="for the ECMO circuit")
    _, payload = run(client, "standard-prophylaxis", mutate=mutate)
    assert payload["cards"] == []


def test_crrt_prefilter_heparin_is_exposure_and_never_a_review(client):
    """CRRT with pre-filter heparin 500 U/h and platelets 42 (an escalation caution): the circuit
    heparin is exposure (no reminder) and never triggers review_therapeutic (§19.4)."""
    def mutate(body):
        add_procedure(body, CRRT)
        add_heparin(body, "hep-crrt", units_per_ml=100, bag_ml=250, rate_u_h=500, text="CRRT pre-filter")
        set_lab(body, "platelets", 42)
    _, payload = run(client, "standard-prophylaxis", mutate=mutate)
    assert payload["cards"] == []


def test_acute_hit_delete_list_includes_flushes_and_locks(client):
    """§19.4: flushes and locks still count as heparin exposure for HIT: the acute-HIT card stops
    them too, and its text says "including flushes and locks"."""
    def mutate(body):
        add_hit(body, days_ago=6)
        set_lab(body, "platelets", 60)
        add_heparin(body, "hep-flush", units_per_ml=100, dose_units=300, text="flush PICC")
    _, payload = run(client, "standard-prophylaxis", mutate=mutate)
    card = only_card(payload)
    assert (kind(card), card["indicator"]) == ("hit_acute", "critical")
    assert "including flushes and locks" in card["detail"]
    assert [a["resourceId"] for a in actions(card) if a["type"] == "delete"] == ["MedicationRequest/hep-flush"]


def test_hit_suspected_counts_a_flush_as_heparin(client):
    """A flush for 8 days and platelets 250 -> 110 (a 56 % fall): hit_suspected (§10.1, §19.4)."""
    def mutate(body):
        add_heparin(body, "hep-flush", units_per_ml=100, dose_units=300, text="flush", hours_ago=8 * 24)
        set_lab(body, "platelets", 110)
        platelet_history(body, [(250, 5)])
    _, payload = run(client, "standard-prophylaxis", mutate=mutate)
    assert kind(only_card(payload)) == "hit_suspected"


def test_acute_hit_on_ecmo_names_bivalirudin_or_argatroban(client):
    """ECMO with acute HIT and no anticoagulant: the HIT card names bivalirudin or argatroban."""
    def mutate(body):
        add_procedure(body, ECMO)
        add_hit(body, days_ago=6)
        set_lab(body, "platelets", 60)
    _, payload = run(client, "standard-prophylaxis", mutate=mutate)
    card = only_card(payload)
    assert kind(card) == "hit_acute" and "bivalirudin or argatroban" in card["detail"]
    assert all(a["type"] != "create" for a in actions(card))


# ---------------------------------------------------------------- §19.8, §19.12, v2 leftover

def _straddling_birth_date() -> str:
    """YYYY-MM whose earliest day makes the patient 18 today and whose latest day does not."""
    import calendar
    from datetime import datetime, timezone

    import pytest
    today = datetime.now(timezone.utc).date()
    if today.day == calendar.monthrange(today.year, today.month)[1]:
        pytest.skip("on the last day of a month no YYYY-MM birth date straddles 18 (§19.8)")
    return f"{today.year - 18:04d}-{today.month:02d}"


def test_partial_birth_date_straddling_18_is_in_scope_and_every_card_says_so(client):
    """§19.8: in scope (earliest day), prophylaxis only, "age uncertain (birth date YYYY-MM)"."""
    from v3_bodies import set_birth_date
    birth = _straddling_birth_date()
    _, payload = run(client, "standard-prophylaxis", mutate=lambda b: set_birth_date(b, birth))
    card = only_card(payload)
    assert kind(card) == "standard_prophylaxis"
    assert f"Age uncertain (birth date {birth}): adult prophylactic dosing assumed; confirm the age." in card["detail"]


def test_therapeutic_candidate_with_partial_birth_date_gets_prophylaxis_only(client):
    from v3_bodies import set_birth_date
    birth = _straddling_birth_date()
    _, payload = run(client, "d-dimer-ward", mutate=lambda b: set_birth_date(b, birth))
    card = only_card(payload)
    assert kind(card) != "therapeutic_candidate"
    assert "Age uncertain" in card["detail"]


def test_history_of_pe_on_long_term_anticoagulant_gets_no_one_click_deescalation(client):
    """The reported case: past PE on long-term anticoagulation (Z86.711, Z79.01), critically ill on
    therapeutic enoxaparin. §19.12: the deescalate card stays, without its one-click suggestion, and
    says "possible other indication ... review with the treating team"."""
    from v2_bodies import add_condition, add_order

    def mutate(body):
        add_order(body, "enox-90", "enoxaparin", dose=90, per_day=2)
        add_condition(body, "hx-pe", "Z86.711", text="personal history of PE")
        add_condition(body, "ltac", "Z79.01", text="long-term anticoagulants")
    _, payload = run(client, "sic-positive", mutate=mutate)
    card = only_card(payload)
    assert kind(card) == "deescalate"
    assert not card.get("suggestions")
    assert "Possible other indication (history of VTE / long-term anticoagulant): review with the treating team." \
        in card["detail"]


def test_without_a_possible_other_indication_the_deescalation_keeps_its_suggestion(client):
    from v2_bodies import add_order
    _, payload = run(client, "sic-positive", mutate=lambda b: add_order(b, "enox-90", "enoxaparin", dose=90, per_day=2))
    card = only_card(payload)
    assert kind(card) == "deescalate" and len(card["suggestions"]) == 1


def test_hit_history_heparin_and_home_doac_action_matches_the_delete_only_suggestion(client):
    """v2 leftover: HIT history, a heparin active and a home DOAC. The suggestion can only delete
    (no create while a non-heparin anticoagulant runs), so neither its label nor the Action line
    may say fondaparinux."""
    from v2_bodies import add_order

    def mutate(body):
        add_order(body, "ufh-sc", "heparin", dose=5000, unit="units", per_day=2)
        add_order(body, "home-apx", "apixaban", dose=5, per_day=2, route=None, kind="MedicationStatement")
    _, payload = run(client, "hit", mutate=mutate)
    card = only_card(payload)
    assert kind(card) == "contraindicated"
    (s,) = card["suggestions"]
    assert [a["type"] for a in s["actions"]] == ["delete"]
    assert "fondaparinux" not in s["label"].lower()
    action_line = next(line for line in card["detail"].split("\n\n") if line.startswith("**Action:**"))
    assert "fondaparinux" not in action_line


def test_hit_history_with_only_a_flush_names_the_flush(client):
    """A flush is heparin for HIT (§19.4); with a HIT history (nothing else active) the avoidance
    card says to use saline flushes (a choice: §19.4 names acute HIT and hit_suspected only)."""
    _, payload = run(client, "hit", mutate=lambda b: add_heparin(b, "hep-flush", units_per_ml=100, dose_units=300,
                                                                 text="flush PICC"))
    card = only_card(payload)
    assert kind(card) == "heparin_avoidance"
    assert "Heparin flush or lock active: use saline flushes and non-heparin locks." in card["detail"]
