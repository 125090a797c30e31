"""Reading resources out of FHIR Bundles (searchset, collection, transaction)."""
from __future__ import annotations

from typing import Any, Iterable, Iterator

from .read import items


def bundle_resources(bundle: Any, types: Iterable[str] | None = None) -> Iterator[dict]:
    """Yield entry resources, skipping search.mode 'outcome'/'include' entries, non-objects,
    and (when `types` is given) resources of other types. Tolerant of any shape: a
    malformed entry is skipped, never raised on."""
    for _, resource in bundle_entries(bundle, types):
        yield resource


def bundle_entries(bundle: Any, types: Iterable[str] | None = None) -> Iterator[tuple[str | None, dict]]:
    """(fullUrl, resource) of the entries `bundle_resources` yields; fullUrl None if absent.
    The fullUrl lets a transaction Bundle's `urn:uuid:` references be resolved."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        return
    wanted = set(types) if types is not None else None
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return
    for entry in entries:
        if type(entry) is not dict and not isinstance(entry, dict):
            continue
        search = entry.get("search")
        if search is not None and isinstance(search, dict) and search.get("mode") not in (None, "match"):
            continue
        resource = entry.get("resource")
        if type(resource) is not dict and not isinstance(resource, dict):
            continue
        rtype = resource.get("resourceType")
        if type(rtype) is not str or (wanted is not None and rtype not in wanted):
            continue
        full_url = entry.get("fullUrl")
        yield (full_url if type(full_url) is str else None), resource


def next_link(bundle: Any) -> str | None:
    """The `link[relation=next]` URL of a searchset page, if any."""
    if not isinstance(bundle, dict):
        return None
    for link in items(bundle.get("link")):
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None
