"""Typed decoding of a hook request's Observation prefetch (issue 25).

The hook body is decoded once, with msgspec: its members (those CDS Hooks defines) and prefetch
values are first cut out as raw JSON (a scan, no objects built); every Observation search (a prefetch key whose
template searches Observation) is then decoded into `ObservationHead` structs, which hold only what
the single pass over the Observations reads (observations.collect: status, subject, codes, times),
each beside its raw JSON. Every other member is decoded with orjson, exactly as before. The
Observations that pass's choice then uses are decoded with orjson, lazily (`TypedObservation.resource`),
so validation (model.py), units and everything after see the same dict as before.

The decode gives up (`decode_hook_body` answers None, and the caller decodes the whole body with
orjson as before) whenever it could differ from that: a body that is not an object, is not valid
UTF-8 or JSON, has no prefetch object or a member CDS Hooks does not define, or any member orjson
refuses. (The body's members are then in this module's order, not the sender's: nothing reads
that order.) A prefetch value that is not a
searchset of well-typed entries (a field the pass reads of another JSON type than FHIR gives it,
an entry or resource that is not an object) is decoded with orjson alone, and read as before.
Left: a number beyond the double range (1e400, which orjson refuses and msgspec skips unread) in a
field of an Observation the pass does not read is a 400 only if a rule then uses that Observation
(its diagnostics count the position from the Observation's start), and not otherwise. (Nesting too
deep, a lone surrogate and invalid UTF-8 still go to orjson.)
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Iterable

import msgspec
import orjson

from ..runtime.errors import BadRequest
from .bundle import next_link
from .templates import query_resource_type


class _Coding(msgspec.Struct, gc=False):
    system: str | None = None
    code: str | None = None


class _Concept(msgspec.Struct, gc=False):
    coding: list[_Coding] | None = None


class _Reference(msgspec.Struct, gc=False):
    reference: str | None = None


class _Period(msgspec.Struct, gc=False):
    start: str | None = None
    end: str | None = None


class _Component(msgspec.Struct, gc=False):
    code: _Concept | None = None


class ObservationHead(msgspec.Struct, gc=False):
    """What observations.collect reads of an Observation, with the JSON types FHIR gives them
    (any other type, and the whole value is read as before)."""
    resourceType: str | None = None
    id: str | None = None
    status: str | None = None
    code: _Concept | None = None
    subject: _Reference | None = None
    effectiveDateTime: str | None = None
    effectivePeriod: _Period | None = None
    effectiveInstant: str | None = None
    issued: str | None = None
    component: list[_Component] | None = None


class _Search(msgspec.Struct, gc=False):
    mode: str | None = None


class _Entry(msgspec.Struct, gc=False):
    search: _Search | None = None
    resource: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


class _Bundle(msgspec.Struct, gc=False):
    resourceType: str | None = None
    entry: list[_Entry] | None = None
    link: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET   # read by orjson: msgspec reads numbers orjson refuses


class TypedObservation:
    """One Observation of a typed prefetch: its head, and the dict decoded on first use."""

    __slots__ = ("head", "raw", "_resource")

    def __init__(self, head: ObservationHead, raw: msgspec.Raw):
        self.head, self.raw, self._resource = head, raw, None

    @property
    def resource(self) -> dict:
        resource = self._resource
        if resource is None:
            resource = self._resource = _loads(self.raw)
        return resource

    def get(self, name: str, default: Any = None) -> Any:
        """dict.get, for code that only identifies resources (data._assemble, hooks.common)."""
        if name == "resourceType":
            return "Observation"
        if name == "id":
            return self.head.id if self.head.id is not None else default
        return self.resource.get(name, default)


class TypedBundle(dict):
    """A prefetch searchset of Observations already read: the Observation match entries, in
    order, and the next-page link. As a dict it is only {"resourceType": "Bundle"}, what the
    request schema checks of a prefetch value; data.DataLayer takes the entries from here."""

    def __init__(self, resources: list[TypedObservation], next_url: str | None, raw: msgspec.Raw):
        super().__init__(resourceType="Bundle")
        self.resources, self.next_url, self.raw = resources, next_url, raw

    def as_json(self) -> Any:
        """The value as orjson reads it (for a reader other than the Observation search)."""
        return _loads(self.raw)


def _loads(raw: msgspec.Raw) -> Any:
    """orjson's reading of a part of the body; what orjson refuses (a number beyond the double
    range, the one thing the typed decode skips unread) is the 400 it was when orjson read the
    whole body, the position then counted from the start of the part."""
    try:
        return orjson.loads(memoryview(raw))
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"Request body is not valid JSON: {str(exc)[:200]}") from None


class _Body(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """The members of a CDS Hooks request, cut out as raw JSON; any other member, and the body
    is decoded as before."""
    hook: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    hookInstance: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    fhirServer: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    fhirAuthorization: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    context: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    prefetch: dict[str, msgspec.Raw] | msgspec.UnsetType = msgspec.UNSET
    extension: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


_MEMBERS = tuple(f for f in _Body.__struct_fields__ if f != "prefetch")
_body = msgspec.json.Decoder(_Body)
_bundle = msgspec.json.Decoder(_Bundle)
_head = msgspec.json.Decoder(ObservationHead)
_FAIL = (msgspec.DecodeError, msgspec.ValidationError, RecursionError, orjson.JSONDecodeError)


@lru_cache(maxsize=64)
def observation_keys(prefetch: tuple[tuple[str, str], ...]) -> frozenset[str]:
    """The prefetch keys (of a service's (key, template) pairs) that search Observations."""
    return frozenset(name for name, template in prefetch
                     if query_resource_type(template) == ("Observation", False))


def decode_hook_body(raw: bytes, keys: Iterable[str]) -> dict | None:
    """The body as orjson.loads gives it, except that the prefetch values of `keys` that are
    searchsets are TypedBundles; None when the body must be decoded with orjson instead."""
    if not raw.isascii():
        try:
            raw.decode("utf-8")   # orjson refuses invalid UTF-8 anywhere; msgspec skips unread strings
        except UnicodeDecodeError:
            return None
    try:
        top = _body.decode(raw)
        prefetch = top.prefetch
        if prefetch is msgspec.UNSET:
            return None
        body: dict = {}
        for name in _MEMBERS:
            value = getattr(top, name)
            if value is not msgspec.UNSET:
                body[name] = orjson.loads(memoryview(value))
    except _FAIL:
        return None
    out: dict = {}
    try:
        for name, value in prefetch.items():
            typed = _typed_bundle(value) if name in keys else None
            out[name] = typed if typed is not None else orjson.loads(memoryview(value))
    except orjson.JSONDecodeError:
        return None
    body["prefetch"] = out
    return body


def _typed_bundle(raw: msgspec.Raw) -> TypedBundle | None:
    """The Observation searchset `raw` as bundle.bundle_resources(value, ("Observation",)) reads
    it, or None (not a Bundle, or an entry that is not well-typed)."""
    try:
        bundle = _bundle.decode(raw)
        if bundle.resourceType != "Bundle":
            return None
        resources = []
        decode = _head.decode
        for entry in bundle.entry or ():
            search = entry.search
            if search is not None and search.mode is not None and search.mode != "match":
                continue
            resource = entry.resource
            if resource is msgspec.UNSET:
                continue
            head = decode(resource)
            if head.resourceType == "Observation":
                resources.append(TypedObservation(head, resource))
        link = orjson.loads(memoryview(bundle.link)) if bundle.link is not msgspec.UNSET else None
    except _FAIL:
        return None
    next_url = next_link({"link": link}) if link is not None else None
    return TypedBundle(resources, next_url, raw)
