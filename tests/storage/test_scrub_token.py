"""Issue 25: the audit scrub's whole-token search (storage/base.py `_Token`, str.find instead of a
regular expression compiled per patient) finds and replaces exactly what the pattern did."""
import random
import re

import pytest

from cds_service.storage.base import _Token

ALPHABET = "ab1-_/ .Zé9"


@pytest.mark.parametrize("word", ["ab", "a", "p1", "a-b", "1", "é", "aa", "a.b", "ab1"])
def test_token_matches_the_regular_expression(word):
    pattern = re.compile(r"(?<![A-Za-z0-9])" + re.escape(word) + r"(?![A-Za-z0-9])")
    token = _Token(word)
    rng = random.Random(word)
    for _ in range(5000):
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 12)))
        assert token.search(text) == bool(pattern.search(text)), text
        assert token.sub("[X]", text) == pattern.sub("[X]", text), text
