"""Clinical rules §19.13 (what cards say), §19.5 (no "cirrhosis"), §19.8 ("age approximate") and
the §19.11 BMI 49.9 vs 50 edge, through the Flask test client. Expected text from the rules."""
from __future__ import annotations

import pytest

from hook_helpers import kind, only_card, run
from v2_bodies import add_order, drop, set_lab
from v3_bodies import add_procedure, set_birth_date


def test_platelets_below_50_on_a_prophylaxis_card_say_prophylactic_dose_only(client):
    _, payload = run(client, "standard-prophylaxis", mutate=lambda b: set_lab(b, "platelets", 40))
    card = only_card(payload)
    assert kind(card) == "standard_prophylaxis"
    line = next(x for x in card["detail"].split("\n\n") if x.startswith("Platelets 40"))
    assert line.endswith("prophylactic dose only; repeat the count [NIH 2024].") and "(" in line   # dated


def test_no_weight_summary_and_wording(client):
    _, payload = run(client, "standard-prophylaxis", mutate=lambda b: drop(b, "body", "weight"))
    card = only_card(payload)
    assert card["summary"] == "No prophylaxis ordered; no weight in 30 days: consider enoxaparin 40 mg SC daily"
    assert "Weigh the patient today (no weight in the last 30 days)" in card["detail"]


def test_candidate_without_weight_never_blames_the_weight_for_a_ufh_infusion(client):
    _, payload = run(client, "d-dimer-ward", mutate=lambda b: drop(b, "body", "weight"))
    card = only_card(payload)
    assert kind(card) == "therapeutic_candidate"
    assert "Weigh the patient today" in card["detail"] and "UFH infusion" not in card["detail"]


def test_therapeutic_dose_above_150_mg_is_named_local_policy(client):
    # 160 kg x 1 mg/kg = 160 mg per dose > therapeutic.max_dose_mg 150
    _, payload = run(client, "d-dimer-ward", mutate=lambda b: set_lab(b, "weight", 160))
    card = only_card(payload)
    assert kind(card) == "therapeutic_candidate"
    assert "above 150 mg per dose: local policy, use the UFH protocol" in card["detail"]


def test_neither_therapeutic_candidate_option_carries_is_recommended(client):
    _, payload = run(client, "d-dimer-ward")
    card = only_card(payload)
    assert kind(card) == "therapeutic_candidate" and len(card["suggestions"]) == 2
    assert all("isRecommended" not in s for s in card["suggestions"])


def test_deescalation_says_when_to_start_the_prophylactic_dose(client):
    _, payload = run(client, "sic-positive", mutate=lambda b: add_order(b, "enox-90", "enoxaparin", dose=90, per_day=2))
    card = only_card(payload)
    assert kind(card) == "deescalate"
    assert "Start the prophylactic dose when the next therapeutic dose would be due." in card["detail"]


def test_no_raw_criteria_codes_in_clinician_text(client):
    def mutate(body):
        add_order(body, "enox-90", "enoxaparin", dose=90, per_day=2)
        drop(body, "procedures", "")
        add_procedure(body, "870386000")    # vasopressor therapy, no rate known
    _, payload = run(client, "sic-positive", mutate=mutate)
    card = only_card(payload)
    assert kind(card) == "deescalate"
    assert "vasopressor_procedure" not in card["detail"] and "vasopressor therapy" in card["detail"]


def test_no_card_says_cirrhosis(client):
    """§19.5: INR 1.8 with bilirubin 2.5 is a caution for therapeutic dosing, never 'cirrhosis'."""
    def mutate(body):
        set_lab(body, "inr", 1.8)
        set_lab(body, "bili", 2.5)
    _, payload = run(client, "d-dimer-ward", mutate=mutate)
    card = only_card(payload)
    assert kind(card) == "prophylaxis_suggestion"   # the caution blocks the candidate, not prophylaxis
    assert "cirrhosis" not in (card["summary"] + card["detail"]).lower()


def test_crcl_from_a_partial_birth_date_says_age_approximate(client):
    _, payload = run(client, "sic-positive", mutate=lambda b: set_birth_date(b, "1958"))
    card = only_card(payload)
    assert "CrCl" in card["detail"] and "CrCl: age approximate (birth date 1958)." in card["detail"]
    assert "Age uncertain" not in card["detail"]


# -- §19.11 BMI 49.9 vs 50: an enoxaparin 60 mg twice-daily draft (order-select) ----------------------
def _draft_60_bid(weight_kg):
    """bmi-42 (female, 165 cm), no oxygen record (severity unknown, not a candidate), draft enoxaparin
    60 mg q12h. 135.85 kg -> BMI 49.899; 136.125 kg -> BMI 50.000 (6-dp compare, §0)."""
    def mutate(body):
        drop(body, "procedures", "nasal")
        set_lab(body, "weight", weight_kg)
        draft = body["context"]["draftOrders"]["entry"][0]["resource"]
        draft["medicationCodeableConcept"]["coding"][0]["code"] = "854238"
        draft["medicationCodeableConcept"]["text"] = "enoxaparin 60 mg/0.6 mL prefilled syringe"
        draft["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 60
        draft["dosageInstruction"][0]["timing"]["repeat"] = {"frequency": 1, "period": 12, "periodUnit": "h"}
    return mutate


def test_bmi_50_draft_of_60_mg_twice_daily_is_an_accepted_equivalent(client):
    """§19.11: at BMI >= 50, 60 mg twice daily is accepted: no correction, no escalation; §19.7: the
    anti-Xa advice is never a card of its own in the order hooks."""
    _, payload = run(client, "bmi-42", mutate=_draft_60_bid(136.125))
    assert payload["cards"] == []


def test_bmi_49_9_draft_of_60_mg_twice_daily_is_above_prophylactic(client):
    """§19.11: below BMI 50 60 mg twice daily is not an accepted equivalent; 0.44 mg/kg per dose is
    intermediate (§10.3) -> §19.2 escalation warning, no one-click update (not critically ill)."""
    _, payload = run(client, "bmi-42", mutate=_draft_60_bid(135.85))
    card = only_card(payload)
    assert (kind(card), card["indicator"]) == ("escalation_warning", "warning")
    assert all(a["type"] != "update" for s in card.get("suggestions", ()) for a in s["actions"])


def test_order_hook_cards_say_age_uncertain_too(client):
    """§19.8: "every card adds" the line, order-hook cards included (bmi-42 draft 40 mg daily at
    BMI 42.2 gives a card; the birth date is made a year that straddles 18)."""
    from datetime import datetime, timezone
    today = datetime.now(timezone.utc).date()
    if (today.month, today.day) == (12, 31):
        pytest.skip("on 31 December no YYYY birth date straddles 18 (§19.8)")
    year = f"{today.year - 18:04d}"
    _, payload = run(client, "bmi-42", mutate=lambda b: set_birth_date(b, year))
    assert payload["cards"]
    for card in payload["cards"]:
        assert f"Age uncertain (birth date {year}): adult prophylactic dosing assumed; confirm the age." in card["detail"]


def test_order_hook_card_showing_a_crcl_from_a_partial_date_says_age_approximate(client):
    _, payload = run(client, "crcl-22", mutate=lambda b: set_birth_date(b, "1946"))
    assert any("CrCl" in card["detail"] for card in payload["cards"])
    for card in payload["cards"]:
        if "CrCl" in card["detail"]:
            assert "CrCl: age approximate (birth date 1946)." in card["detail"]
