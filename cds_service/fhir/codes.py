"""The packaged code data (codes.json), resolved to (system, code) pairs.

One place knows every code the service reads. An institution extends it with an
extra file of the same shape (policy key `codes.extra_file`), merged by union.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Iterable

Coding = tuple[str, str]  # (system URI, code)


class CodeDataError(ValueError):
    pass


def _merge(base: Any, extra: Any) -> Any:
    """Union-merge: dicts recursively, lists by appending unseen items."""
    if isinstance(base, dict) and isinstance(extra, dict):
        out = dict(base)
        for key, value in extra.items():
            out[key] = _merge(base[key], value) if key in base else value
        return out
    if isinstance(base, list) and isinstance(extra, list):
        return base + [item for item in extra if item not in base]
    return extra


@dataclass(frozen=True)
class CodeSet:
    """Exact (system, code) pairs plus ICD-10 family prefixes (entries ending in '*')."""

    exact: frozenset[Coding]
    prefixes: tuple[Coding, ...] = ()

    def matches(self, system: str | None, code: str | None) -> bool:
        if not system or not code:
            return False
        if (system, code) in self.exact:
            return True
        return any(system == s and code.startswith(p) for s, p in self.prefixes)

    def matches_any(self, codings: Iterable[Coding]) -> bool:
        return any(self.matches(s, c) for s, c in codings)


class Codes:
    def __init__(self, data: dict[str, Any]):
        self.data = data
        self.systems: dict[str, str] = data["systems"]

    def resolve(self, entry: str) -> Coding:
        alias, _, code = entry.partition(":")
        if alias not in self.systems or not code:
            raise CodeDataError(f"code entry {entry!r} has no known system alias")
        return self.systems[alias], code

    def codeset(self, entries: Iterable[str]) -> CodeSet:
        exact, prefixes = set(), []
        for entry in entries:
            system, code = self.resolve(entry)
            if code.endswith("*"):
                prefixes.append((system, code[:-1]))
            else:
                exact.add((system, code))
        return CodeSet(frozenset(exact), tuple(prefixes))

    def observation(self, key: str) -> CodeSet:
        return self.codeset(self.data["observations"][key]["codes"])

    def observation_keys(self) -> list[str]:
        return [k for k in self.data["observations"] if not k.startswith("_")]

    def prefetch_codes(self, group: str) -> list[str]:
        """`system|code` tokens for one Observation prefetch key, in file order, unique. A key
        is in a group through its `prefetch` or its `also_prefetch` list (platelets are in
        `labs` and `platelet_trend`)."""
        out: list[str] = []
        for spec in self.data["observations"].values():
            if not isinstance(spec, dict) or (spec.get("prefetch") != group
                                              and group not in spec.get("also_prefetch", ())):
                continue
            for entry in spec["codes"]:
                system, code = self.resolve(entry)
                token = f"{system}|{code}"
                if token not in out:
                    out.append(token)
        return out

    def section(self, name: str) -> dict[str, CodeSet]:
        return {key: self.codeset(v) for key, v in self.data[name].items() if not key.startswith("_")}

    def ingredients(self) -> dict[str, tuple[str, CodeSet]]:
        return {name: (spec["class"], self.codeset(spec["codes"]))
                for name, spec in self.data["ingredients"].items()}


@lru_cache(maxsize=8)
def load_codes(extra_file: str | None = None) -> Codes:
    text = resources.files("cds_service.fhir").joinpath("codes.json").read_text(encoding="utf-8")
    data = json.loads(text)
    if extra_file:
        try:
            with open(extra_file, encoding="utf-8") as fh:
                extra = json.load(fh)
        except (OSError, ValueError) as exc:
            raise CodeDataError(f"cannot read codes.extra_file {extra_file!r}: {exc}") from None
        if not isinstance(extra, dict):
            raise CodeDataError("codes.extra_file must hold a JSON object")
        data = _merge(data, extra)
    codes = Codes(data)
    # Fail at load time, not mid-request, on a bad alias.
    for key in codes.observation_keys():
        codes.codeset(codes.data["observations"][key]["codes"])
    for key, ingredient in codes.data.get("products", {}).items():
        if not key.startswith("_"):
            codes.resolve(key)
    return codes
