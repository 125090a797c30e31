"""The card builder itself keeps the CDS Hooks card rules, not only the cards today's examples make."""
from __future__ import annotations

import pytest

from cds_service.cards.build import action_delete, card, suggestion
from conftest import assert_valid_cds_response


def _two(recommended_second: bool):
    return [suggestion("A", action_delete("a", "MedicationRequest/a"), recommended=True),
            suggestion("B", action_delete("b", "MedicationRequest/b"), recommended=recommended_second)]


def test_two_recommended_alternatives_are_refused():
    with pytest.raises(ValueError, match="at most one"):
        card("dose_correction", "warning", "s", "d", suggestions=_two(True), selection="at-most-one")


def test_one_recommended_alternative_is_a_valid_card():
    issued = card("dose_correction", "warning", "s", "d", suggestions=_two(False), selection="at-most-one")
    assert_valid_cds_response({"cards": [issued.card]})
    assert sum(s.get("isRecommended", False) for s in issued.card["suggestions"]) == 1


def test_no_suggestions_means_no_selection_behavior():
    issued = card("anti_xa", "info", "s", "d", selection="at-most-one")
    assert "selectionBehavior" not in issued.card and "suggestions" not in issued.card
