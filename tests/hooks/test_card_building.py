"""Card building blocks: prune, Markdown escaping, summaries, vocabulary coverage, and the
example generator (fresh dates; reference copies in sync)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from cds_service.cli import main as cli_main
from cds_service.examples import SCENARIOS, STATIC_NOW, build
from cds_service.hooks import content
from cds_service.hooks.cards import card, md, prune, summary_text
from cds_service.logic import regimen
from cds_service.logic.policy import Policy
from conftest import EXAMPLES, assert_no_empty
from hook_helpers import kind, only_card, run


def test_prune_drops_every_empty_value_at_every_depth():
    value = {"a": None, "b": "", "c": [], "d": {}, "e": "  ", "f": 0, "g": False,
             "h": {"x": [None, {}, {"y": ""}], "z": [1, {"k": None, "v": "ok"}]}}
    assert prune(value) == {"f": 0, "g": False, "h": {"z": [1, {"v": "ok"}]}}
    assert_no_empty(prune(value))


def test_card_without_suggestions_has_no_selection_behavior_and_no_empties():
    issued = card("anti_xa", "info", "x", "detail", suggestions=[], evidence=())
    assert "suggestions" not in issued.card and "selectionBehavior" not in issued.card
    assert "links" not in issued.card     # no evidence given: omitted, never []
    assert_no_empty(issued.card)
    with pytest.raises(ValueError):
        card("anti_xa", "hard-stop", "x", "detail")


def test_md_makes_data_inert():
    text = md("<img src=x onerror=alert(1)> | *bold* [link](http://x) `code` _u_ #h & ~s~\nnext")
    assert "<" not in text and ">" not in text and "&lt;img" in text and "&amp;" in text
    for ch in "|*[]`_#~":
        assert f"\\{ch}" in text
    assert "\n" not in text


def test_summary_falls_back_to_shorter_forms_and_never_exceeds_139():
    long = "x" * 150
    assert summary_text(long, "short form") == "short form"
    cut = summary_text("word " * 60)
    assert len(cut) <= 139 and cut.endswith("…")


def test_every_note_code_the_logic_can_emit_has_text():
    missing = [n for n in regimen.NOTE_ORDER if n not in content.NOTE_TEXT]
    assert not missing
    policy = Policy.default()
    for code in content.NOTE_TEXT:
        assert "{" not in content.label(content.NOTE_TEXT, code, policy)


def test_hostile_unit_text_is_escaped_in_the_card(client):
    def hostile(body):
        for entry in body["prefetch"]["labs"]["entry"]:
            resource = entry["resource"]
            if resource["id"].startswith("example-standard-platelets"):
                resource["valueQuantity"] = {"value": 240, "unit": "<img src=x onerror=alert(1)>|"}

    _, payload = run(client, "standard-prophylaxis", mutate=hostile)
    card_ = only_card(payload)
    assert kind(card_) == "standard_prophylaxis"
    detail = card_["detail"]
    assert "platelet count" in detail      # named as not available before the first dose
    assert "<img" not in detail and "&lt;img" in detail   # the rejected unit, escaped


def test_example_bodies_are_dated_relative_to_now():
    now = datetime(2030, 6, 1, 12, 0, tzinfo=timezone.utc)
    body = build("sic-positive", now)
    stamps = [e["resource"]["effectiveDateTime"] for e in body["prefetch"]["labs"]["entry"]]
    assert max(stamps) == (now - timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert body["prefetch"]["patient"]["birthDate"] == "1964-01-01"   # 66 years old at `now`


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_reference_copies_in_examples_match_the_generator(name):
    scenario = SCENARIOS[name]
    stored = json.loads((EXAMPLES / scenario.file_name).read_text())
    assert stored == build(name, STATIC_NOW), "run: cds-service example --write-all examples"


def test_example_cli(capsys):
    assert cli_main(["example", "crcl-22", "--now", "2030-06-01T12:00:00Z"]) == 0
    assert json.loads(capsys.readouterr().out) == build("crcl-22", datetime(2030, 6, 1, 12, tzinfo=timezone.utc))
    assert cli_main(["example", "--list"]) == 0
    assert "sic-positive" in capsys.readouterr().out
    assert cli_main(["example", "nope"]) == 2
    assert cli_main(["example", "crcl-22", "--now", "yesterday"]) == 2


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_each_example_gives_the_card_it_is_meant_to_show(client, name):
    _, payload = run(client, name)
    expected = SCENARIOS[name].expect
    if expected is None:
        assert payload == {"cards": []}
    else:
        card_ = only_card(payload)
        assert (card_["indicator"], kind(card_)) == expected
