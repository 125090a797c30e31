"""CDS_CAPTURE_DIR: write each hook request, pseudonymised, for `cds-service replay` (issue 23).

Off by default; refused at start-up with CDS_ENV=production unless
CDS_CAPTURE_ALLOW_PRODUCTION is set (config.Config.validated).

What is replaced before anything reaches the disk (`pseudonymise`):
- every resource id (patient, practitioner and encounter ids first of all; other ids too, as EHRs
  and test data often build them from the patient's), wherever it appears: resource ids,
  references ("Patient/123", absolute URLs ending so), action resourceIds, context.patientId,
  context.userId, context.encounterId. Each becomes a stable pseudonym, HMAC-SHA256 of
  "<type>/<id>" under the site key, so one patient is one pseudonym in every file and across
  restarts, references still meet their resources, and nobody without the key can link back;
- names, identifiers (MRN), telecom, address and photo of those resources; `display` of any
  reference to them;
- tokens: fhirAuthorization is dropped entirely (the replay sends prefetch only), fhirServer
  becomes https://fhir.invalid. The JWT (an HTTP header) is never read here.

Each file: {"service", "hook", "captured_at", "status", "request", "response"}, the response
pseudonymised with the same map (its suggestions reference the patient). A failed write is
logged and never fails the hook call.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
from flask import Flask, Response, g, request

log = logging.getLogger(__name__)

PERSON_TYPES = ("Patient", "Practitioner", "PractitionerRole", "RelatedPerson")
_REF = re.compile(r"^(?P<prefix>.*?)(?P<type>[A-Z][A-Za-z]{1,63})/(?P<id>[A-Za-z0-9\-.]{1,64})"
                  r"(?P<rest>/_history/[^/]+)?$")
_PERSONAL = ("name", "identifier", "telecom", "address", "photo", "contact")
KEY_FILE = ".capture-key"
FHIR_SERVER = "https://fhir.invalid"


class Pseudonymiser:
    def __init__(self, key: bytes):
        self._key = key

    def pseudonym(self, rtype: str, rid: str) -> str:
        digest = hmac.new(self._key, f"{rtype}/{rid}".encode(), hashlib.sha256).hexdigest()
        return f"pseudo-{digest[:20]}"

    def _ref(self, text: str) -> str:
        m = _REF.match(text)
        if not m:
            return text
        return f"{m['prefix']}{m['type']}/{self.pseudonym(m['type'], m['id'])}{m['rest'] or ''}"

    def _walk(self, value: Any, in_reference: bool = False) -> Any:
        if isinstance(value, list):
            return [self._walk(v) for v in value]
        if not isinstance(value, dict):
            return value
        rtype = value.get("resourceType")
        out: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(rtype, str) and key == "id" and isinstance(item, str):
                out[key] = self.pseudonym(rtype, item)
            elif rtype in PERSON_TYPES and key in _PERSONAL:
                if key == "name":
                    out[key] = [{"text": f"{rtype} {self.pseudonym(rtype, str(value.get('id', '')))}"}]
                # identifiers, telecom, address, photo, contact: dropped
            elif key in ("reference", "fullUrl", "resourceId") and isinstance(item, str):
                out[key] = self._ref(item)
            elif key == "display" and "reference" in value and _REF.match(str(value.get("reference", ""))) \
                    and _REF.match(str(value["reference"]))["type"] in PERSON_TYPES:
                continue  # the display of a person reference is their name
            else:
                out[key] = self._walk(item)
        return out

    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        body = dict(body)
        body.pop("fhirAuthorization", None)
        if "fhirServer" in body:
            body["fhirServer"] = FHIR_SERVER
        context = dict(body.get("context") or {})
        if isinstance(context.get("patientId"), str):
            context["patientId"] = self.pseudonym("Patient", context["patientId"])
        if isinstance(context.get("encounterId"), str):
            context["encounterId"] = self.pseudonym("Encounter", context["encounterId"])
        if isinstance(context.get("userId"), str):
            context["userId"] = self._ref(context["userId"])
        if isinstance(context.get("selections"), list):  # order-select: "MedicationRequest/123"
            context["selections"] = [self._ref(x) if isinstance(x, str) else x for x in context["selections"]]
        body["context"] = context
        return self._walk(body)

    def response(self, payload: Any) -> Any:
        return self._walk(payload)


def site_key(cfg, directory: Path) -> bytes:
    """CDS_CAPTURE_KEY, else a random key kept (0600) in the capture directory."""
    if cfg.capture_key:
        return cfg.capture_key.encode()
    path = directory / KEY_FILE
    key = secrets.token_hex(32).encode()
    tmp = directory / f".{KEY_FILE}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    try:
        os.link(tmp, path)  # atomic: the first worker's key wins, complete, for every worker
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return path.read_bytes().strip()


def init_app(app: Flask, state) -> None:
    cfg = state.config
    if not cfg.capture_dir:
        return
    directory = Path(cfg.capture_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    pseudo = Pseudonymiser(site_key(cfg, directory))
    state.extensions["capture"] = pseudo
    log.warning("request capture is ON: pseudonymised hook requests are written to %s", directory)

    @app.after_request
    def _capture(resp: Response) -> Response:
        body = g.pop("cds_capture_body", None)
        if body is None or resp.status_code not in (200, 412) or not isinstance(body, dict):
            return resp
        try:
            write(directory, pseudo, request.view_args.get("service_id", ""), body, resp)
        except Exception as exc:  # never fail a hook call for the capture
            log.error("request capture failed: %s", type(exc).__name__)
        return resp


def write(directory: Path, pseudo: Pseudonymiser, service_id: str, body: dict, resp: Response) -> Path:
    now = datetime.now(timezone.utc)
    try:
        answer = orjson.loads(resp.get_data())
    except orjson.JSONDecodeError:
        answer = None
    record = {"service": service_id, "hook": body.get("hook"), "captured_at": now.isoformat(),
              "status": resp.status_code, "request": pseudo.request(body), "response": pseudo.response(answer)}
    name = f"{now.strftime('%Y%m%dT%H%M%S%fZ')}-{service_id}-{secrets.token_hex(4)}.json"
    tmp = directory / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # still patient data: owner only
    with os.fdopen(fd, "wb") as fh:
        fh.write(orjson.dumps(record, option=orjson.OPT_INDENT_2))
    os.replace(tmp, directory / name)
    return directory / name
