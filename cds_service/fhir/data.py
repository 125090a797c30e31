"""How a hook call gets its FHIR data: prefetch, self-fetch, cache, 412 (cds-hooks-notes §6).

`DataLayer.gather(call)` reads every key the service declares:

- **Prefetch first**, per key, telling the four cases apart: absent -> fetch it;
  `null` -> no data, never refetched; a searchset with no match entries -> no results;
  an OperationOutcome (or a value of the wrong shape) -> refetch, 412 if that fails.
  From a Bundle only `search.mode` match entries of the template's resource type count.
- **Self-fetch** of what is left, from `fhirServer` (allowlisted, see allowlist.py),
  with the EHR's bearer token when one is given. On a cache miss it takes at most two
  round trips: (1) one FHIR `batch` Bundle holding exactly the missing queries, plus
  reads of Medications referenced by orders already in hand; (2) either the parallel-GET
  fallback when the server rejects batch, or the follow-ups (next pages, Medications
  referenced by the orders fetched in (1)). Medications discovered later would need a
  third round trip and are left out (the order is then ignored by extraction), with a
  note in `problems`.
- **Paging**: `link[relation=next]` of a searchset (the client's or the server's) is
  followed on fhirServer while there is one, the key has fewer than `max_pages` pages and
  the deadline has not passed. This simplifies fhir-data-requirements §10 (which also stops
  once a page is not full or its oldest entry is outside the key's longest window): it may
  read more pages than needed, bounded by the cap. Each further page is one more round trip.
  A key stopped by the page cap is listed in `truncated`; a page that cannot be fetched
  makes the key unobtainable (the data would be silently incomplete).
- **Deadline**: the whole data phase shares CDS_FHIR_TIMEOUT.
- **Cache**: successful self-fetched results, keyed by (fhirServer, query, sha256 of the
  access token or "anon"), so one token never sees data fetched with another. Stored as
  serialised JSON, so a caller mutating its resources cannot alter the cache.
- **412**: a required key (service.required_keys) that cannot be had raises
  PreconditionFailed naming each key and why; optional keys go to `problems`.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Iterable
from urllib.parse import urljoin, urlsplit

import orjson
from cachetools import TTLCache

from ..runtime import metrics
from ..runtime.errors import PreconditionFailed
from ..logging_setup import log_event
from .allowlist import loggable_url, refusal_reason, same_base
from .bundle import bundle_resources, next_link
from .client import MAX_RESPONSE_BYTES, DeadlineExceeded, FetchError, FhirClient
from .templates import TemplateError, fill_template, query_resource_type
from .typed import TypedBundle, TypedObservation

log = logging.getLogger("cds_service.fhir.data")

MAX_PAGES = 5  # per key, the first page included
MAX_MEDICATION_READS = 50
# Medications read because an order points at them: by_key entry and `problems` prefix.
MEDICATION_REFS = "medication_refs"
_ORDER_TYPES = ("MedicationRequest", "MedicationAdministration", "MedicationStatement")


@dataclass
class GatheredData:
    """Everything one hook call could read. Treat the resources as read-only."""

    # Every usable resource, de-duplicated by (resourceType, id); order: declared keys in
    # order, entries in server order, then referenced Medications. A JSON dict, or for a
    # prefetched Observation search a typed.TypedObservation (its `resource` is the dict).
    resources: list[Any]
    by_key: dict[str, list[dict]]
    # key -> "prefetch" | "fetched" | "cache" (had data) or "null" | "empty" (had none).
    origin: dict[str, str]
    fhir_calls: int = 0  # HTTP requests sent (retries and pages included)
    round_trips: int = 0  # sequential rounds of requests
    problems: dict[str, str] = field(default_factory=dict)  # optional key / Medication -> why
    truncated: list[str] = field(default_factory=list)  # keys cut by the page cap


@dataclass
class _Key:
    name: str
    template: str
    rtype: str
    is_read: bool
    query: str | None = None
    template_error: str | None = None
    resources: list[dict] = field(default_factory=list)
    source: str | None = None  # prefetch / fetched / cache / null
    refetch_why: str | None = None  # set when the key must be fetched
    next_url: str | None = None
    pages: int = 0
    truncated: bool = False
    error: str | None = None


@dataclass
class _Result:
    status: int
    body: Any


def _token_hash(token: str | None) -> str:
    return hashlib.sha256(token.encode()).hexdigest() if token else "anon"


def _status_reason(status: int) -> str:
    if status in (401, 403):
        return f"fhirServer refused access ({status})"
    return f"fhirServer answered {status}"


# Largest answer kept in the cache. With CDS_FHIR_CACHE_SIZE entries this bounds the cache's
# memory (512 × 256 KB = 128 MB per worker at the defaults); a full 200-Observation page is ~150 KB.
MAX_CACHED_ENTRY_BYTES = 256 * 1024


class DataLayer:
    def __init__(self, config, *, max_response_bytes: int = MAX_RESPONSE_BYTES,
                 max_pages: int = MAX_PAGES):
        self.config = config
        self.max_response_bytes = max_response_bytes
        self.max_pages = max_pages
        self.cache: TTLCache | None = None
        self.shared_cache = None  # issue 16: CDS_CACHE=redis://... (fhir/shared_cache.py)
        if config.fhir_cache_ttl > 0 and getattr(config, "cache", ""):
            from .shared_cache import RedisCache
            self.shared_cache = RedisCache(config.cache, ttl_s=config.fhir_cache_ttl, prefix=config.redis_prefix,
                                           timeout_ms=config.redis_timeout_ms)
        elif config.fhir_cache_size > 0 and config.fhir_cache_ttl > 0:
            self.cache = TTLCache(maxsize=config.fhir_cache_size, ttl=config.fhir_cache_ttl)
        self._cache_lock = threading.Lock()

    # --- cache ---------------------------------------------------------------------------

    def _cache_get(self, ckey: tuple) -> list[dict] | None:
        if self.shared_cache is not None:
            raw = self.shared_cache.get(ckey)
            metrics.fhir_cache(raw is not None)
            return None if raw is None else orjson.loads(raw)
        if self.cache is None:
            return None
        with self._cache_lock:
            raw = self.cache.get(ckey)
        metrics.fhir_cache(raw is not None)
        return None if raw is None else orjson.loads(raw)

    def _cache_put(self, ckey: tuple, resources: list[dict]) -> None:
        if self.shared_cache is not None:
            raw = orjson.dumps(resources)
            if len(raw) <= MAX_CACHED_ENTRY_BYTES:
                self.shared_cache.put(ckey, raw)
            return
        if self.cache is not None:
            raw = orjson.dumps(resources)
            if len(raw) > MAX_CACHED_ENTRY_BYTES:
                return  # an outsize answer is refetched, never held: memory <= entries × this
            with self._cache_lock:
                self.cache[ckey] = raw

    def clear_cache(self) -> None:
        if self.shared_cache is not None:
            self.shared_cache.clear()
        if self.cache is not None:
            with self._cache_lock:
                self.cache.clear()

    # --- the data phase ------------------------------------------------------------------

    def gather(self, call) -> GatheredData:
        """All data for `call` (a HookCall), or PreconditionFailed (412)."""
        deadline = time.monotonic() + self.config.fhir_timeout
        body = call.body
        prefetch = body.get("prefetch") if isinstance(body.get("prefetch"), dict) else {}
        keys = [self._from_prefetch(name, template, call.context, prefetch)
                for name, template in call.service.prefetch.items()]
        for key in keys:
            if key.refetch_why and key.template_error:
                key.error = f"{key.refetch_why} and its template cannot be filled: {key.template_error}"
        meds = _Medications(self, body.get("fhirServer"))
        needs_server = any(k.refetch_why and not k.error or k.next_url for k in keys) or meds.missing(keys, limit=1)

        client = None
        server_problem = self._server_problem(body, call) if needs_server else None
        if needs_server and not server_problem:
            auth = body.get("fhirAuthorization")
            token = auth.get("access_token") if isinstance(auth, dict) else None
            token = token if isinstance(token, str) and token else None
            client = FhirClient(body["fhirServer"], token, deadline, self.config.fhir_timeout,
                                self.max_response_bytes)
            meds.client, meds.tkey = client, _token_hash(token)

        round_trips = 0
        to_fetch: list[_Key] = []
        for key in keys:
            if key.error:
                continue
            if key.refetch_why and server_problem:
                key.error = f"{key.refetch_why} and it cannot be fetched: {server_problem}"
            elif key.next_url and server_problem:
                key.error = f"its next page cannot be fetched: {server_problem}"
            elif key.refetch_why:
                cached = self._cache_get((client.base, key.query, meds.tkey))
                if cached is None:
                    to_fetch.append(key)
                else:
                    key.resources, key.source = cached, "cache"
        if client is None:
            meds.skip(keys, server_problem or "no fhirServer call was needed")
        else:
            med_queries = meds.wanted(keys)
            queries = [k.query for k in to_fetch] + med_queries
            if queries:
                results, round_trips = self._fetch_queries(client, queries)
                for key in to_fetch:
                    self._apply(key, results[key.query])
                meds.apply(med_queries, results)
            round_trips += self._follow_up(client, keys, meds, round_trips)
            for key in to_fetch:
                if key.error is None and key.source == "fetched":
                    self._cache_put((client.base, key.query, meds.tkey), key.resources)
        return self._assemble(call, keys, meds, client, round_trips)

    def _from_prefetch(self, name: str, template: str, context: dict, prefetch: dict) -> _Key:
        rtype, is_read = query_resource_type(template)
        key = _Key(name, template, rtype, is_read)
        try:
            key.query = fill_template(template, context)
        except TemplateError as exc:
            key.template_error = str(exc)
        if name not in prefetch:
            key.refetch_why = "not prefetched"
            return key
        value = prefetch[name]
        if value is None:
            key.source = "null"
        elif isinstance(value, dict) and value.get("resourceType") == "OperationOutcome":
            key.refetch_why = "its prefetch was an OperationOutcome"
        elif not self._take(key, value):
            key.refetch_why = "its prefetch was not a usable " + ("resource" if is_read else "Bundle")
            # The key and the kind of fault only: never a value from the input (issue 21 M5:
            # a resourceType holding a patient's name and id reached the log, at any length).
            log_event(log, logging.WARNING, "unusable prefetch value, refetching", key=name[:64],
                      fault=prefetch_fault(value, is_read))
        else:
            key.source = "prefetch"
        return key

    def _take(self, key: _Key, value: Any) -> bool:
        """Put the first answer for `key` (a resource or a Bundle) into it."""
        if type(value) is TypedBundle:  # an Observation searchset read by typed.decode_hook_body
            if key.rtype == "Observation" and not key.is_read:
                key.resources = list(value.resources)
                key.next_url = value.next_url
                key.pages = 1
                return True
            value = value.as_json()
        if not isinstance(value, dict):
            return False
        if value.get("resourceType") == "Bundle":
            key.resources = list(bundle_resources(value, (key.rtype,)))
            key.next_url = next_link(value)
        elif key.is_read and value.get("resourceType") == key.rtype:
            key.resources = [value]
        else:
            return False
        key.pages = 1
        return True

    def _server_problem(self, body: dict, call) -> str | None:
        server = body.get("fhirServer")
        if not isinstance(server, str) or not server:
            return "the request has no fhirServer"
        reason = refusal_reason(server, call.state.config.fhir_allowlist)  # the calling site's (issue 24)
        if reason:
            # Logged (never the token) so an operator can see why and fix CDS_FHIR_ALLOWLIST.
            log_event(log, logging.WARNING, "fhirServer refused, no request sent", reason=reason,
                      fhirServer=loggable_url(server), service=call.service.id,
                      hookInstance=body.get("hookInstance"))
            return "fhirServer is not allowed by this service's allowlist"
        return None

    def _fetch_queries(self, client: FhirClient, queries: list[str]) -> tuple[dict[str, Any], int]:
        """query -> _Result or FetchError, using one batch, else parallel GETs. Returns the
        results and the number of round trips spent (1 or 2)."""
        unique = list(dict.fromkeys(queries))
        bundle = {"resourceType": "Bundle", "type": "batch",
                  "entry": [{"request": {"method": "GET", "url": q}} for q in unique]}
        [answer] = client.run([partial(client.post_batch, bundle)])
        if isinstance(answer, DeadlineExceeded):
            return {q: answer for q in unique}, 1
        if not isinstance(answer, FetchError):
            status, body = answer
            if status in (401, 403):
                return {q: FetchError(_status_reason(status)) for q in unique}, 1
            parsed = _batch_entries(body, len(unique)) if 200 <= status < 300 else None
            if parsed is not None:
                return dict(zip(unique, parsed)), 1
            why = f"status {status}" if not 200 <= status < 300 else "not a batch-response"
        else:
            why = answer.reason
        log_event(log, logging.INFO, "batch not usable, falling back to parallel GETs", why=why,
                  queries=len(unique))
        answers = client.run([partial(client.get, client.url(q)) for q in unique])
        return {q: a if isinstance(a, FetchError) else _Result(*a) for q, a in zip(unique, answers)}, 2

    def _apply(self, key: _Key, result: Any, *, page: bool = False) -> None:
        """Record a fetched first page (or, with page=True, a further page) for `key`."""
        error = self._read_answer(key, result, page)
        if error:
            key.error = (f"fetching its next page failed: {error}" if page
                         else f"{key.refetch_why}; fetching it failed: {error}")

    def _read_answer(self, key: _Key, result: Any, page: bool) -> str | None:
        if isinstance(result, FetchError):
            return result.reason
        if key.is_read and not page and result.status in (404, 410):
            key.source = "null"  # the server says the resource does not exist
            return None
        if not 200 <= result.status < 300:
            return _status_reason(result.status)
        body = result.body
        if page:
            if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
                return "the page was not a Bundle"
            key.resources.extend(bundle_resources(body, (key.rtype,)))
            key.next_url = next_link(body)
            key.pages += 1
            return None
        if not isinstance(body, dict) or (body.get("resourceType") != "Bundle" and not key.is_read):
            return "the answer was not a Bundle"
        if not self._take(key, body):
            return f"the answer was not a {key.rtype} resource"
        key.source = "fetched"
        return None

    def _follow_up(self, client: FhirClient, keys: list[_Key], meds: "_Medications",
                   spent: int) -> int:
        """Next pages (every round) and newly referenced Medications (only while the call
        has used fewer than two round trips). Returns round trips spent."""
        rounds = 0
        while True:
            pages: list[_Key] = []
            for key in keys:
                if key.error or not key.next_url:
                    continue
                if key.pages >= self.max_pages:
                    key.next_url = None
                    key.truncated = True
                else:
                    # A relative link is resolved against fhirServer; an absolute one must lie under it.
                    key.next_url = urljoin(client.base + "/", key.next_url)
                    if same_base(key.next_url, client.base):
                        pages.append(key)
                    else:
                        key.error = "its next link points outside fhirServer"
            med_queries = meds.wanted(keys) if spent + rounds < 2 else []
            if not med_queries:
                meds.skip(keys, "reading it would need a third round trip")
            if not pages and not med_queries:
                return rounds
            tasks = [partial(client.get, k.next_url) for k in pages]
            tasks += [partial(client.get, client.url(q)) for q in med_queries]
            answers = client.run(tasks)
            rounds += 1
            wrapped = [a if isinstance(a, FetchError) else _Result(*a) for a in answers]
            for key, answer in zip(pages, wrapped):
                self._apply(key, answer, page=True)
            meds.apply(med_queries, dict(zip(med_queries, wrapped[len(pages):])))

    def _assemble(self, call, keys: list[_Key], meds: "_Medications", client: FhirClient | None,
                  round_trips: int) -> GatheredData:
        required = call.service.required_keys
        missing = {k.name: k.error for k in keys if k.error and k.name in required}
        problems = {k.name: k.error for k in keys if k.error and k.name not in required}
        problems.update(meds.problems)
        fhir_calls = client.calls if client else 0
        metrics.fhir_exchange(call.service.id, fhir_calls, round_trips)
        if missing:
            metrics.precondition_failed(call.service.id, missing.values())
            log_event(log, logging.WARNING, "required FHIR data unobtainable", service=call.service.id,
                      hookInstance=call.body.get("hookInstance"), missing=missing, fhir_calls=fhir_calls)
            by_reason: dict[str, list[str]] = {}
            for name, why in missing.items():
                by_reason.setdefault(why, []).append(name)
            raise PreconditionFailed(
                "Required FHIR data could not be obtained: "
                + "; ".join(f"{', '.join(names)} ({why})" for why, names in by_reason.items()) + ".")
        had = [k for k in keys if not k.error]  # an optional key that failed is in `problems` only
        # De-duplicated per key and across keys in one pass: one identity per resource.
        by_key: dict[str, list[dict]] = {}
        resources: list[dict] = []
        seen_all: set = set()
        groups = [(k.name, k.resources) for k in had]
        if meds.resources:
            groups.append((MEDICATION_REFS, meds.resources))
        for name, group in groups:
            seen: set = set()
            kept: list[dict] = []
            for res in group:
                if type(res) is TypedObservation:
                    rid = res.head.id
                    ident = ("Observation", rid) if rid else id(res)
                else:
                    rid = res.get("id")
                    ident = (res.get("resourceType"), rid) if type(rid) is str and rid else _identity(res)
                if ident in seen:
                    continue
                seen.add(ident)
                kept.append(res)
                if ident not in seen_all:
                    seen_all.add(ident)
                    resources.append(res)
            by_key[name] = kept
        origin = {k.name: "null" if k.source == "null" else ("empty" if not k.resources else k.source)
                  for k in had}
        truncated = [k.name for k in keys if k.truncated]
        if truncated:
            log_event(log, logging.WARNING, "page cap reached; later pages not read",
                      keys=truncated, hookInstance=call.body.get("hookInstance"))
        return GatheredData(resources=resources, by_key=by_key, origin=origin,
                            fhir_calls=fhir_calls, round_trips=round_trips,
                            problems=problems, truncated=truncated)


class _Medications:
    """Medications that orders reference (`medicationReference`) but the data lacks."""

    def __init__(self, layer: DataLayer, server: Any):
        self.layer = layer
        self.base = server.rstrip("/") if isinstance(server, str) else None
        self.client: FhirClient | None = None
        self.tkey = "anon"
        self.resources: list[dict] = []
        self.problems: dict[str, str] = {}
        self.attempted: set[str] = set()

    def missing(self, keys: list[_Key], limit: int | None = None) -> list[str]:
        """Medication reads still needed, in order, unique; at most `limit` (a prefetch may
        hold tens of thousands of orders: stop scanning once enough are found)."""
        have = {res["id"] for k in keys if k.rtype == "Medication" for res in k.resources
                if res.get("resourceType") == "Medication" and isinstance(res.get("id"), str)}
        have.update(res["id"] for res in self.resources if isinstance(res.get("id"), str))
        wanted: dict[str, None] = {}  # ordered set: membership in O(1)
        for key in keys:
            if key.rtype not in _ORDER_TYPES:
                continue   # a key holds only resources of its template's type (_take)
            for res in key.resources:
                if limit is not None and len(wanted) >= limit:
                    return list(wanted)
                if res.get("resourceType") not in _ORDER_TYPES:
                    continue
                query = self._query(res.get("medicationReference"))
                if query and query.split("/")[1] not in have and query not in self.attempted:
                    wanted[query] = None
        return list(wanted)

    def _query(self, ref: Any) -> str | None:
        """`Medication/<id>` for a resolvable reference; contained (#x) ones are not fetched."""
        value = ref.get("reference") if isinstance(ref, dict) else None
        if not isinstance(value, str) or value.startswith("#"):
            return None
        if "://" in value:
            if self.base is None or not same_base(value, self.base):
                return None
            value = urlsplit(value).path[len(urlsplit(self.base).path.rstrip("/")) + 1:]
        parts = value.split("/")
        if len(parts) != 2 or parts[0] != "Medication":
            return None
        try:
            return fill_template("Medication/{{context.patientId}}", {"patientId": parts[1]})
        except TemplateError:
            return None  # not a FHIR id: never pasted into a URL

    def wanted(self, keys: list[_Key]) -> list[str]:
        """Queries still to send (cache hits are taken here, at no HTTP cost)."""
        out = []
        room = max(0, MAX_MEDICATION_READS - len(self.attempted))
        for query in self.missing(keys, limit=room):
            self.attempted.add(query)
            cached = self.layer._cache_get((self.client.base, query, self.tkey))
            if cached is not None:
                self.resources.extend(cached)
            else:
                out.append(query)
        return out

    def apply(self, queries: Iterable[str], results: dict[str, Any]) -> None:
        for query in queries:
            result = results[query]
            if isinstance(result, FetchError):
                self.problems[query] = result.reason
            elif not 200 <= result.status < 300:
                self.problems[query] = _status_reason(result.status)
            elif isinstance(result.body, dict) and result.body.get("resourceType") == "Medication":
                self.resources.append(result.body)
                self.layer._cache_put((self.client.base, query, self.tkey), [result.body])
            else:
                self.problems[query] = "fhirServer's answer was not a Medication"

    def skip(self, keys: list[_Key], why: str) -> None:
        queries = self.missing(keys, limit=MAX_MEDICATION_READS)
        for query in queries:
            self.attempted.add(query)
            self.problems[query] = f"not read: {why}"
        if queries:  # one line, not one per reference
            log_event(log, logging.INFO, "referenced Medications not read", count=len(queries),
                      first=queries[0], why=why)


def _batch_entries(body: Any, count: int) -> list[Any] | None:
    """Per-query results of a batch-response with `count` entries, or None if it is not one."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle" \
            or body.get("type") != "batch-response":
        return None
    entries = body.get("entry")
    if not isinstance(entries, list) or len(entries) != count:
        return None
    out: list[Any] = []
    for entry in entries:
        response = entry.get("response") if isinstance(entry, dict) else None
        status_text = response.get("status") if isinstance(response, dict) else None
        head = status_text.split(" ", 1)[0] if isinstance(status_text, str) else ""
        if not head.isdigit():
            out.append(FetchError("a batch entry had no response status"))
        else:
            out.append(_Result(int(head), entry.get("resource")))
    return out


def _identity(res: dict) -> Any:
    rid = res.get("id")
    return (res.get("resourceType"), rid) if type(rid) is str and rid or isinstance(rid, str) and rid \
        else id(res)


def _dedup(items: Iterable[dict]) -> list[dict]:
    seen: set = set()
    add = seen.add
    out = []
    for res in items:
        rid = res.get("id")
        ident = (res.get("resourceType"), rid) if type(rid) is str and rid else (
            _identity(res) if isinstance(rid, str) else id(res))
        if ident not in seen:
            add(ident)
            out.append(res)
    return out


def init_app(app, state) -> None:
    """Attach the data layer: handlers call `state.extensions["data"].gather(call)`."""
    state.extensions["data"] = DataLayer(state.config)


def prefetch_fault(value: Any, is_read: bool) -> str:
    """What is wrong with an unusable prefetch value, in words that hold none of its content."""
    if not isinstance(value, dict):
        return f"a JSON {type(value).__name__}, not an object"
    rtype = value.get("resourceType")
    if rtype is None:
        return "no resourceType"
    if not isinstance(rtype, str):
        return "resourceType is not a string"
    if not is_read and rtype != "Bundle":
        return "resourceType is not Bundle"
    return "resource or Bundle not usable"
