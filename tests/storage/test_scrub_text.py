"""Issue 25: the audit scrub runs on the serialised JSON text; its output is byte-for-byte the
tree walk's (`_scrub`, then orjson) on the cases that make text handling hard."""
from __future__ import annotations

import orjson
import pytest

from cds_service.storage.base import _scrub, _scrub_json

MARK = "[patient:abc]"


def ref_hash(text: str) -> str:
    return "h" * 16 + text


@pytest.mark.parametrize("pid, value", [
    ("p1", {"a": "p1", "b": "Patient/p1", "c": "seen p1 today", "d": "p10", "e": ["xp1", "p1-x", 1]}),
    ("123", {"n": 12345, "m": [123, "123"], "t": "id 123,", "u": "Observation/123-plt"}),   # numeric ids
    ("123", {"a": 1, "b": ":123,", "c": {"d": 123}}),      # the id between two literals, in numbers
    ('we"ird\\id', {"a": 'we"ird\\id', "b": 'Patient/we"ird\\id', "c": 'a we"ird\\id b'}),   # escaped in JSON
    ("n", {"a": "line\nbreak", "b": "n", "c": "Patient/n"}),   # the id inside an escape sequence
    ("p1", {"p1": 1, "Patient/p1": {"x": "p1"}}),          # keys: the tree walk (fallback)
    ("p1", {"Patient/p1": 1, "Patient/p1 ": 2}),
    ("é1", {"a": "é1", "b": "Patient/é1", "c": "x é1 y"}),
    ("p1", {"nothing": "here", "list": [1.5, None, True]}),
    ("p1", {"a": "p1 and p1", "b": ["p1", "Patient/p1", "x"], "c": "p1p1", "d": "say \"p1\""}),   # a backslash: the walk
    ("ab", {"a": "xab ab", "b": "ab", "c": 1, "d": "zz ab", "e": "aab"}),
])
def test_the_text_scrub_equals_the_tree_walk(pid, value):
    assert _scrub_json(value, pid, MARK, ref_hash) == orjson.dumps(_scrub(value, pid, MARK, ref_hash)).decode()
