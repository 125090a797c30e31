"""Review of issue 25: storage.base._Token (str.find) finds and replaces exactly what the per-patient
pattern it replaced did: ids at string boundaries, ids inside longer ids, repeated and overlapping ids."""
from __future__ import annotations

import random
import re

from cds_service.storage.base import _Token


def test_token_matches_the_previous_pattern():
    rng = random.Random(25)
    alphabet = "ab1-/ ."
    for _ in range(20000):
        pid = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 3)))
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        old = re.compile(r"(?<![A-Za-z0-9])" + re.escape(pid) + r"(?![A-Za-z0-9])")
        new = _Token(pid)
        assert new.search(text) == bool(old.search(text)), (pid, text)
        assert new.sub("[M]", text) == old.sub("[M]", text), (pid, text)
