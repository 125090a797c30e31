"""The state a hook call carries: the process's AppState, the service declarations and their
registry (discovery is generated here), and HookCall, one request on its way through
data -> assessment -> cards. Below hooks/, smart/ and web/ so that none of them imports another
for it."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from ..config import Config
from ..logic.policy import Policy


@dataclass
class HookCall:
    """One validated hook request on its way through data -> assessment -> cards."""

    service: "Service"
    body: dict[str, Any]
    state: "AppState"
    # The request time: "now" of the assessment (every lookback window counts back from it).
    received_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def context(self) -> dict[str, Any]:
        return self.body["context"]

    @property
    def hook_instance(self) -> str:
        return self.body["hookInstance"]

    @property
    def patient_id(self) -> str:
        return self.context["patientId"]

    @property
    def encounter_id(self) -> str | None:
        return self.context.get("encounterId") or None


Handler = Callable[[HookCall], dict]


@dataclass(frozen=True)
class Service:
    id: str
    hook: str
    title: str
    description: str
    handler: Handler
    prefetch: Mapping[str, str]
    usage_requirements: str
    # Prefetch keys that must be had (else 412). Keys not listed only enrich the cards.
    required_keys: frozenset[str] = field(default_factory=frozenset)

    @property
    def context_schema(self) -> str:
        return f"context-{self.hook}"

    def discovery(self) -> dict[str, Any]:
        entry = {
            "hook": self.hook,
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "usageRequirements": self.usage_requirements,
        }
        if self.prefetch:
            entry["prefetch"] = dict(self.prefetch)
        return entry


class Registry:
    def __init__(self, services: list[Service]):
        ids = [s.id for s in services]
        if len(ids) != len(set(ids)):
            raise ValueError(f"duplicate service ids: {ids}")
        self._services = {s.id: s for s in services}

    def get(self, service_id: str) -> Service | None:
        return self._services.get(service_id)

    def __iter__(self):
        return iter(self._services.values())

    def discovery(self) -> dict[str, Any]:
        return {"services": [s.discovery() for s in self]}


@dataclass
class AppState:
    """Everything a request needs, built once per process."""

    config: Config
    policy: Policy
    registry: Registry
    # Filled in by the data, storage and security layers when they are configured.
    extensions: dict[str, Any] = field(default_factory=dict)
    # Site profiles (issue 24, cds_service/sites): the calling site's id and mode (live,
    # silent, off); "default"/"live" is the implicit site of the single-site variables.
    site: str = "default"
    site_mode: str = "live"
