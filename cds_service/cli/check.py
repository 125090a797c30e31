"""`cds-service check URL`: a black-box conformance self-check of a deployed CDS service (issue 23).

One line per check (PASS, FAIL or SKIP, the check's name, what was seen); exit 1 when any check
fails, 2 on a usage error. Usable against any CDS Hooks service: the hook requests are this
service's examples for its own service ids, or the integrator's own (--request FILE, any service).

Checks:
- discovery: GET /cds-services answers {"services": [...]}, each with hook, id and a string
  description (markdown in 3.0), prefetch a map of strings, ids unique;
- cors: a browser preflight (OPTIONS) and a GET from an origin get Access-Control-Allow-Origin,
  and the preflight allows the Authorization and Content-Type headers and POST;
- jwt (with --jwt-key): no token -> 401; a token for another audience -> 401; a valid token
  signed with the integrator's key -> accepted;
- 412: a request with neither prefetch nor fhirServer, to a service that declares prefetch, is
  answered 412 (the service cannot get its data);
- cards: every card of every answer: summary < 140 characters, indicator, source.label, and the
  CDS Hooks 3.0 (ballot) invariants cds-resp-1 ... cds-resp-7 (HL7/cds-hooks input/fsh/invariants);
- feedback: an override with the card's first override reason, posted to
  {service}/feedback, is answered 200.
"""
from __future__ import annotations

import argparse
import json
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ..storage import synthetic  # marks our calls: feedback-report leaves them out (review #13)

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


@dataclass
class Result:
    status: str
    name: str
    detail: str

    def line(self) -> str:
        return f"{self.status} {self.name}: {self.detail}"


# -- the CDS Hooks 3.0 card invariants (cds-resp-1 ... 7) --------------------------------------------
def _suggestions(card):
    return [s for s in card.get("suggestions") or [] if isinstance(s, dict)]


def _actions(card):
    return [a for s in _suggestions(card) for a in s.get("actions") or [] if isinstance(a, dict)]


INVARIANTS: list[tuple[str, str, Callable[[dict], bool]]] = [
    ("cds-resp-1", "at most one suggestion isRecommended when selectionBehavior is at-most-one",
     lambda c: c.get("selectionBehavior") != "at-most-one"
     or sum(1 for s in _suggestions(c) if s.get("isRecommended") is True) <= 1),
    ("cds-resp-2", "a delete action carries resourceId and no resource (spec severity: warning)",
     lambda c: all(a.get("resourceId") and "resource" not in a for a in _actions(c) if a.get("type") == "delete")),
    ("cds-resp-3", "appContext only on smart links",
     lambda c: all(link.get("type") == "smart" or "appContext" not in link
                   for link in c.get("links") or [] if isinstance(link, dict))),
    ("cds-resp-4", "every override reason has a display",
     lambda c: all(isinstance(r, dict) and r.get("display") for r in c.get("overrideReasons") or [])),
    ("cds-resp-5", "every suggestion action has a description",
     lambda c: all(a.get("description") for a in _actions(c))),
    ("cds-resp-6", "selectionBehavior present when there are suggestions",
     lambda c: not _suggestions(c) or bool(c.get("selectionBehavior"))),
    ("cds-resp-7", "actionSelectionBehavior is all, any or at-most-one",
     lambda c: all(s.get("actionSelectionBehavior") in (None, "all", "any", "at-most-one") for s in _suggestions(c))),
]

BASICS: list[tuple[str, str, Callable[[dict], bool]]] = [
    ("card.summary", "summary present and under 140 characters",
     lambda c: isinstance(c.get("summary"), str) and 0 < len(c["summary"]) < 140),
    ("card.indicator", "indicator is info, warning or critical",
     lambda c: c.get("indicator") in ("info", "warning", "critical")),
    ("card.source", "source.label present",
     lambda c: isinstance(c.get("source"), dict) and bool(c["source"].get("label"))),
    ("card.selectionBehavior", "selectionBehavior is at-most-one or any",
     lambda c: c.get("selectionBehavior") in (None, "at-most-one", "any")),
]


def card_checks(answers: list[tuple[str, dict]]) -> list[Result]:
    cards = [(label, card) for label, body in answers for card in (body or {}).get("cards") or []
             if isinstance(card, dict)]
    results = []
    for name, text, ok in BASICS + INVARIANTS:
        if not cards:
            results.append(Result(SKIP, name, "no card in any answer"))
            continue
        bad = [f"{label} card {card.get('uuid', '?')}" for label, card in cards if not ok(card)]
        results.append(Result(FAIL, name, f"{text}: violated by {', '.join(bad[:3])}"
                              + (f" and {len(bad) - 3} more" if len(bad) > 3 else ""))
                       if bad else Result(PASS, name, f"{text} ({len(cards)} cards)"))
    return results


# -- the other checks --------------------------------------------------------------------------------
class Checker:
    def __init__(self, base: str, *, session, client_key=None, origin: str = "https://sandbox.cds-hooks.org",
                 requests_from: list[Path] | None = None, timeout: float = 10.0):
        self.base = base.rstrip("/")
        self.http = session
        self.key = client_key
        self.origin = origin
        self.request_files = requests_from or []
        self.timeout = timeout
        self.services: list[dict] = []

    def _auth(self, url: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key.mint(url)}"} if self.key else {}

    def post(self, service_id: str, body: Any, *, path: str = "", headers: dict | None = None):
        url = f"{self.base}/cds-services/{service_id}{path}"
        h = {"Content-Type": "application/json", **self._auth(url), **synthetic.headers("check"), **(headers or {})}
        return self.http.post(url, data=json.dumps(body), headers=h, timeout=self.timeout)

    def discovery(self) -> Result:
        resp = self.http.get(f"{self.base}/cds-services", headers=self._auth(f"{self.base}/cds-services"),
                             timeout=self.timeout)
        if resp.status_code != 200:
            return Result(FAIL, "discovery", f"GET /cds-services answered {resp.status_code}")
        try:
            body = resp.json()
        except ValueError:
            return Result(FAIL, "discovery", "the answer is not JSON")
        services = body.get("services") if isinstance(body, dict) else None
        if not isinstance(services, list):
            return Result(FAIL, "discovery", "no 'services' array")
        problems = []
        for i, s in enumerate(services):
            if not isinstance(s, dict):
                problems.append(f"services[{i}] is not an object")
                continue
            for field in ("hook", "id", "description"):
                if not isinstance(s.get(field), str) or not s.get(field):
                    problems.append(f"services[{i}].{field} missing")
            prefetch = s.get("prefetch")
            if prefetch is not None and not (isinstance(prefetch, dict)
                                             and all(isinstance(v, str) for v in prefetch.values())):
                problems.append(f"services[{i}].prefetch is not a map of query strings")
        ids = [s.get("id") for s in services if isinstance(s, dict)]
        if len(ids) != len(set(ids)):
            problems.append("service ids are not unique")
        if problems:
            return Result(FAIL, "discovery", "; ".join(problems))
        self.services = services
        return Result(PASS, "discovery", f"{len(services)} services: {', '.join(map(str, ids))}")

    def cors(self) -> Result:
        if not self.services:
            return Result(SKIP, "cors", "no service to try")
        url = f"{self.base}/cds-services/{self.services[0]['id']}"
        pre = self.http.options(url, headers={"Origin": self.origin, "Access-Control-Request-Method": "POST",
                                              "Access-Control-Request-Headers": "authorization, content-type"},
                                timeout=self.timeout)
        get = self.http.get(f"{self.base}/cds-services", headers={"Origin": self.origin, **self._auth(
            f"{self.base}/cds-services")}, timeout=self.timeout)
        problems = []
        if pre.status_code >= 400:
            problems.append(f"preflight answered {pre.status_code}")
        for name, resp in (("preflight", pre), ("GET", get)):
            allow = resp.headers.get("Access-Control-Allow-Origin")
            if allow not in ("*", self.origin):
                problems.append(f"{name}: Access-Control-Allow-Origin is {allow!r}")
        headers = {h.strip().lower() for h in pre.headers.get("Access-Control-Allow-Headers", "").split(",")}
        if not {"authorization", "content-type"} <= headers and "*" not in headers:
            problems.append(f"preflight allows headers {sorted(headers)}, not authorization and content-type")
        methods = {m.strip().upper() for m in pre.headers.get("Access-Control-Allow-Methods", "").split(",")}
        if "POST" not in methods and "*" not in methods:
            problems.append(f"preflight allows methods {sorted(methods)}, not POST")
        if problems:
            return Result(FAIL, "cors", "; ".join(problems))
        return Result(PASS, "cors", f"origin {self.origin} allowed; preflight allows POST with Authorization")

    def jwt(self, sample: tuple[str, dict] | None) -> Result:
        if sample is None:
            return Result(SKIP, "jwt", "no hook request to send")
        service_id, body = sample
        url = f"{self.base}/cds-services/{service_id}"
        bare = self.http.post(url, data=json.dumps(_fresh(body)), headers={"Content-Type": "application/json"},
                              timeout=self.timeout)
        if self.key is None:
            return Result(SKIP, "jwt", f"no --jwt-key given (a call without a token answered {bare.status_code})")
        problems = []
        if bare.status_code != 401:
            problems.append(f"no token: {bare.status_code}, not 401")
        wrong = self.http.post(url, data=json.dumps(_fresh(body)), timeout=self.timeout, headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self.key.mint(url + '-not-this-service')}"})
        if wrong.status_code != 401:
            problems.append(f"token for another aud: {wrong.status_code}, not 401")
        good = self.post(service_id, _fresh(body))
        if good.status_code in (401, 403):
            problems.append(f"valid token refused: {good.status_code} {good.text[:200]}")
        if problems:
            return Result(FAIL, "jwt", "; ".join(problems))
        return Result(PASS, "jwt", f"401 without a token and for another aud; accepted when signed by {self.key.iss}")

    def precondition(self, sample: tuple[str, dict] | None) -> Result:
        with_prefetch = [s for s in self.services if s.get("prefetch")]
        if sample is None or not with_prefetch:
            return Result(SKIP, "412", "no service declaring prefetch, or no hook request to send")
        service_id, body = sample
        if not any(s["id"] == service_id for s in with_prefetch):
            return Result(SKIP, "412", f"{service_id} declares no prefetch")
        bare = _fresh(body)
        bare.pop("prefetch", None)
        bare.pop("fhirServer", None)
        bare.pop("fhirAuthorization", None)
        resp = self.post(service_id, bare)
        if resp.status_code != 412:
            return Result(FAIL, "412", f"a request with no prefetch and no fhirServer answered {resp.status_code}")
        return Result(PASS, "412", "a request with no prefetch and no fhirServer is answered 412")

    def feedback(self, answers: list[tuple[str, dict]]) -> Result:
        for service_id, body in answers:
            for card in (body or {}).get("cards") or []:
                if not card.get("uuid"):
                    continue
                item = {"card": card["uuid"], "outcome": "overridden",
                        "outcomeTimestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
                reasons = card.get("overrideReasons") or []
                if reasons:
                    item["overrideReason"] = {"reason": reasons[0], "userComment": "cds-service check"}
                resp = self.post(service_id, {"feedback": [item]}, path="/feedback")
                if resp.status_code != 200:
                    return Result(FAIL, "feedback", f"feedback on card {card['uuid']} answered {resp.status_code}")
                return Result(PASS, "feedback", f"override of card {card['uuid']} ({service_id}) answered 200")
        return Result(SKIP, "feedback", "no card with a uuid to give feedback on")

    # -- the hook requests ---------------------------------------------------------------------------
    def samples(self) -> list[tuple[str, dict]]:
        out: list[tuple[str, dict]] = []
        for path in self.request_files:
            data = json.loads(path.read_text(encoding="utf-8"))
            service_id = data.get("service") if isinstance(data, dict) and "request" in data else None
            body = data["request"] if service_id else data
            service_id = service_id or next((s["id"] for s in self.services if s.get("hook") == body.get("hook")), None)
            if service_id:
                out.append((service_id, body))
        if out:
            return out
        # this service's own examples, for the service ids it has
        from .examples import SCENARIOS, build
        ids = {s.get("hook"): s["id"] for s in self.services}
        for name in SCENARIOS:
            body = build(name)
            if body["hook"] in ids:
                out.append((ids[body["hook"]], body))
        return out

    def run(self) -> list[Result]:
        results = [self.discovery()]
        if results[0].status == FAIL:
            return results
        results.append(self.cors())
        samples = self.samples()
        sample = samples[0] if samples else None
        results.append(self.jwt(sample))
        results.append(self.precondition(sample))
        answers = []
        failed = []
        for service_id, body in samples:
            resp = self.post(service_id, _fresh(body))
            if resp.status_code == 200:
                answers.append((service_id, resp.json()))
            else:
                failed.append(f"{service_id} {resp.status_code}")
        results.append(Result(FAIL if failed or not samples else PASS, "hook-calls",
                              f"{len(answers)} of {len(samples)} answered 200"
                              + (f"; not 200: {', '.join(failed[:5])}" if failed else "")))
        results += card_checks(answers)
        results.append(self.feedback(answers))
        return results


def _fresh(body: dict) -> dict:
    body = json.loads(json.dumps(body))
    body["hookInstance"] = str(uuid.uuid4())
    return body


def run(args: argparse.Namespace) -> int:
    import requests

    from .client_jwt import ClientKey
    try:
        key = ClientKey.from_args(args.jwt_key, args.jwt_iss, args.jwt_kid, args.jwt_alg)
        files = [Path(p) for p in args.request or []]
        for path in files:
            if not path.is_file():
                raise ValueError(f"no request file {str(path)!r}")
    except (OSError, ValueError) as exc:
        print(f"cds-service check: {exc}", file=sys.stderr)
        return 2
    checker = Checker(args.url, session=requests.Session(), client_key=key, origin=args.origin,
                      requests_from=files, timeout=args.timeout)
    try:
        results = checker.run()
    except requests.RequestException as exc:
        print(f"FAIL connection: {type(exc).__name__}: {exc}")
        return 1
    for r in results:
        print(r.line())
    failed = [r for r in results if r.status == FAIL]
    print(f"{len(results)} checks: {len(results) - len(failed) - sum(r.status == SKIP for r in results)} passed, "
          f"{len(failed)} failed, {sum(r.status == SKIP for r in results)} skipped")
    return 1 if failed else 0


def add_parser(sub) -> None:
    p = sub.add_parser("check", help="black-box conformance self-check of a deployed CDS service",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("url", help="the service's base URL (discovery is URL/cds-services)")
    p.add_argument("--origin", default="https://sandbox.cds-hooks.org", help="browser origin for the CORS check")
    p.add_argument("--request", action="append",
                   help="a hook request JSON (or a capture file) to send; repeatable. Default: this service's examples")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    from .client_jwt import add_arguments
    add_arguments(p)
    p.set_defaults(func=run)
