"""`cds-service replay`: replay captured hook requests against two service versions and diff
the answers (issue 23).

    cds-service replay --capture-dir DIR --base URL_A --against URL_B
    cds-service replay --capture-dir DIR --base URL_A --answers DIR2     # a saved answer set
    cds-service replay --capture-dir DIR --base URL_A --save-answers DIR2

Input: the files CDS_CAPTURE_DIR writes (web/capture.py), already pseudonymised. Each request is
sent with a fresh hookInstance (and a fresh userId, see fresh_call), every FHIR date and dateTime shifted by one fixed offset (the
time since the capture, or --shift-days), no fhirAuthorization and no fhirServer: prefetch only,
so no FHIR server is needed (a key the capture did not prefetch gives the same 412 on both sides).

The diff, per request, compares cards by kind (source.topic.code): a card added or removed; for
a kind on both sides, the indicator, the summary and the suggestion actions (type, resource
type, code, dose, timing, resourceId; never ids, uuids or dates). One line per request; exit 0
when nothing differs, 1 when something does, 2 on a usage or connection error.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ..storage import synthetic  # our own calls are marked (review #13)

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")


# -- the request -------------------------------------------------------------------------------
def shift_dates(value: Any, offset: timedelta) -> Any:
    """Every full FHIR date / dateTime / instant moved by `offset` (dates by whole days).
    Partial dates (year, year-month) are left alone: they carry no day to move."""
    if isinstance(value, dict):
        return {k: shift_dates(v, offset) for k, v in value.items()}
    if isinstance(value, list):
        return [shift_dates(v, offset) for v in value]
    if isinstance(value, str):
        if _DATETIME.match(value):
            moment = datetime.fromisoformat(value.replace("Z", "+00:00")) + offset
            text = moment.isoformat(timespec="milliseconds" if "." in value else "seconds")
            return text.replace("+00:00", "Z") if value.endswith("Z") else text
        if _DATE.match(value):
            try:
                return (date.fromisoformat(value) + timedelta(days=round(offset.total_seconds() / 86400))).isoformat()
            except ValueError:
                return value
    return value


def prepare(record: dict[str, Any], offset: timedelta) -> dict[str, Any]:
    body = shift_dates(record["request"], offset)
    body["hookInstance"] = str(uuid.uuid4())
    body.pop("fhirAuthorization", None)
    body.pop("fhirServer", None)
    return body


def fresh_call(body: dict[str, Any], keep_user: bool) -> dict[str, Any]:
    """`body` as one new call: a fresh hookInstance and, unless `keep_user`, a fresh userId,
    so the target's card lifecycle (repeat suppression and snooze are per user, clinical-rules
    §18.3) never withholds a card because of an earlier replay or the capture itself."""
    body = dict(body, hookInstance=str(uuid.uuid4()))
    if not keep_user and isinstance(body.get("context"), dict) and "userId" in body["context"]:
        kind = str(body["context"]["userId"]).split("/", 1)[0] or "Practitioner"
        body["context"] = dict(body["context"], userId=f"{kind}/replay-{uuid.uuid4().hex[:16]}")
    return body


def offset_for(record: dict[str, Any], shift_days: float | None, now: datetime) -> timedelta:
    if shift_days is not None:
        return timedelta(days=shift_days)
    captured = datetime.fromisoformat(record["captured_at"])
    return now - captured


# -- the diff ------------------------------------------------------------------------------------
def _action(action: dict[str, Any]) -> str:
    r = action.get("resource") or {}
    codes = [f"{c.get('system', '')}|{c.get('code', '')}" for c in
             ((r.get("medicationCodeableConcept") or r.get("code") or {}).get("coding") or [])]
    dose = [(d.get("doseAndRate") or [{}])[0].get("doseQuantity") for d in r.get("dosageInstruction") or []]
    timing = [(d.get("timing") or {}).get("repeat") for d in r.get("dosageInstruction") or []]
    parts = {"type": action.get("type"), "resourceType": r.get("resourceType"), "codes": codes,
             "dose": dose, "timing": timing, "resourceId": action.get("resourceId")}
    return json.dumps({k: v for k, v in parts.items() if v not in (None, [], [None])}, sort_keys=True)


def card_view(card: dict[str, Any]) -> dict[str, Any]:
    return {"kind": ((card.get("source") or {}).get("topic") or {}).get("code") or "(no kind)",
            "indicator": card.get("indicator"), "summary": card.get("summary"),
            "actions": sorted(_action(a) for s in card.get("suggestions") or [] for a in s.get("actions") or [])}


def diff(a: tuple[int, Any], b: tuple[int, Any]) -> list[str]:
    """Differences between two answers (status, body), as short lines; [] when the same."""
    (status_a, body_a), (status_b, body_b) = a, b
    if status_a != status_b:
        return [f"status {status_a} -> {status_b}"]
    if status_a != 200:
        return []
    cards_a = [card_view(c) for c in (body_a or {}).get("cards", [])]
    cards_b = [card_view(c) for c in (body_b or {}).get("cards", [])]
    lines: list[str] = []
    remaining = list(cards_b)
    for card in cards_a:
        match = next((c for c in remaining if c["kind"] == card["kind"]), None)
        if match is None:
            lines.append(f"- card removed: {card['kind']} ({card['indicator']})")
            continue
        remaining.remove(match)
        if card["indicator"] != match["indicator"]:
            lines.append(f"~ {card['kind']}: indicator {card['indicator']} -> {match['indicator']}")
        if card["summary"] != match["summary"]:
            lines.append(f"~ {card['kind']}: summary {card['summary']!r} -> {match['summary']!r}")
        if card["actions"] != match["actions"]:
            gone = [x for x in card["actions"] if x not in match["actions"]]
            new = [x for x in match["actions"] if x not in card["actions"]]
            lines.append(f"~ {card['kind']}: suggestion actions changed (removed {gone}, added {new})")
    lines += [f"+ card added: {c['kind']} ({c['indicator']})" for c in remaining]
    return lines


# -- running ---------------------------------------------------------------------------------------
def load_captures(directory: Path) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(directory.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SystemExit(f"cds-service replay: {path.name} is not a capture file: {exc}")
        if not isinstance(record, dict) or not isinstance(record.get("request"), dict) or not record.get("service"):
            raise SystemExit(f"cds-service replay: {path.name} is not a capture file (no service/request)")
        out.append((path.name, record))
    return out


def _post(session, base: str, record: dict[str, Any], body: dict[str, Any], client_key,
          timeout: float) -> tuple[int, Any]:
    url = f"{base.rstrip('/')}/cds-services/{record['service']}"
    # a fresh JWT per call: the service refuses a jti it has seen
    headers = {"Authorization": f"Bearer {client_key.mint(url)}"} if client_key else {}
    headers.update(synthetic.headers("replay"))  # left out of feedback-report (review #13)
    resp = session.post(url, json=body, headers=headers, timeout=timeout)
    try:
        return resp.status_code, resp.json()
    except ValueError:
        return resp.status_code, None


def run(args: argparse.Namespace) -> int:
    import requests

    directory = Path(args.capture_dir)
    if not directory.is_dir():
        print(f"cds-service replay: no capture directory {str(directory)!r}", file=sys.stderr)
        return 2
    if bool(args.against) == bool(args.answers) and not args.save_answers:
        print("cds-service replay: give --against URL or --answers DIR (or --save-answers DIR)", file=sys.stderr)
        return 2
    captures = load_captures(directory)
    if not captures:
        print(f"cds-service replay: no capture files in {str(directory)!r}", file=sys.stderr)
        return 2
    saved: dict[str, Any] = {}
    if args.answers:
        for path in Path(args.answers).glob("*.json"):
            saved[path.name] = json.loads(path.read_text(encoding="utf-8"))
    from .client_jwt import ClientKey
    try:
        client_key = ClientKey.from_args(args.jwt_key, args.jwt_iss, args.jwt_kid, args.jwt_alg)
    except (OSError, ValueError) as exc:
        print(f"cds-service replay: {exc}", file=sys.stderr)
        return 2
    now = datetime.now(timezone.utc)
    session = requests.Session()
    changed = 0
    results = []
    for name, record in captures:
        body = prepare(record, offset_for(record, args.shift_days, now))
        try:
            first = _post(session, args.base, record, fresh_call(body, args.keep_user), client_key, args.timeout)
            if args.save_answers:
                out = Path(args.save_answers)
                out.mkdir(parents=True, exist_ok=True)
                (out / name).write_text(json.dumps({"status": first[0], "response": first[1]}, indent=1))
            if args.against:
                second = _post(session, args.against, record, fresh_call(body, args.keep_user), client_key,
                               args.timeout)
            elif args.answers:
                if name not in saved:
                    lines = ["no saved answer"]
                    second = None
                else:
                    second = (saved[name]["status"], saved[name]["response"])
            else:
                second = first
        except requests.RequestException as exc:
            print(f"cds-service replay: {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
        if second is not None:
            # the saved answer is the old side: old -> new reads as A(saved) -> B(base)
            lines = diff(second, first) if args.answers else diff(first, second)
        changed += bool(lines)
        results.append({"file": name, "service": record["service"], "differences": lines})
        if not args.json:
            mark = "DIFF" if lines else "same"
            print(f"{mark} {name} ({record['service']})" + ("" if not lines else ": " + "; ".join(lines)))
    if args.json:
        print(json.dumps({"requests": len(results), "changed": changed, "results": results}, indent=2))
    else:
        print(f"{len(results)} requests replayed, {changed} with differences")
    return 1 if changed else 0


def add_parser(sub) -> None:
    p = sub.add_parser("replay", help="replay captured hook requests against two service versions and diff the cards",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--capture-dir", required=True, help="directory of capture files (CDS_CAPTURE_DIR)")
    p.add_argument("--base", required=True, help="base URL of the service to replay against (A)")
    p.add_argument("--against", help="base URL of the second service (B): diff A -> B")
    p.add_argument("--answers", help="directory of saved answers (from --save-answers): diff saved -> A")
    p.add_argument("--save-answers", help="write A's answers here (one file per capture file)")
    p.add_argument("--shift-days", type=float, default=None,
                   help="shift every date by this many days (default: by the time since each capture)")
    from .client_jwt import add_arguments
    add_arguments(p)  # a service with CDS_AUTH=required: a fresh client JWT per call
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    p.add_argument("--keep-user", action="store_true",
                   help="send the captured userId (default: a fresh one per call, so the card lifecycle "
                        "never withholds a card in a replay)")
    p.add_argument("--json", action="store_true", help="print the diff as JSON")
    p.set_defaults(func=run)
