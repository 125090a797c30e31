"""What an order check finds (clinical rules §19.1): a finding per rule that fires, with the order
the service proposes instead of the draft. Shared by order_check.py and order_safety.py, which
both make findings, so that neither imports the other for its types."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Kind = str


@dataclass(frozen=True)
class Proposed:
    """The order the service proposes instead of the draft (per administration)."""

    ingredient: str
    dose_mg: float | None
    dose_units: float | None
    doses_per_day: int
    route: str = "subcutaneous"

    def to_json(self) -> dict:
        return {"ingredient": self.ingredient, "dose_mg": self.dose_mg,
                "dose_units": self.dose_units, "doses_per_day": self.doses_per_day,
                "route": self.route}


@dataclass(frozen=True)
class Finding:
    kind: Kind
    reasons: tuple[str, ...] = ()
    proposed: Proposed | None = None
    missing: tuple[str, ...] = ()
    # v2: the card indicator the rules give this finding ("info" | "warning" | "critical");
    # None leaves it to the card builder.
    urgency: str | None = None
    # v3: what the suggestion does: "update" (the draft to `proposed`), "delete" (the draft),
    # "switch" (create `proposed` and delete the draft, one suggestion) or None (text only).
    action: str | None = None
    # v3: values the card text needs (name, value), e.g. the maximum a ceiling names.
    values: tuple[tuple[str, Any], ...] = ()

    def value(self, name: str, default: Any = None) -> Any:
        return dict(self.values).get(name, default)

    def to_json(self) -> dict:
        return {"kind": self.kind, "reasons": list(self.reasons),
                "proposed": self.proposed.to_json() if self.proposed else None,
                "missing": list(self.missing), "urgency": self.urgency, "action": self.action}
