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
- everywhere: identifiers, extensions, narratives (text.div), Bundle links, entry request and
  response, the display of references, and note text (only the words a rule reads are kept);
  an absolute reference loses the EHR's host (https://fhir.invalid/…), a search-style one
  (Encounter?identifier=…) becomes a pseudonym;
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

log = logging.getLogger("cds_service.capture")  # its name before web/ (log fields)

PERSON_TYPES = ("Patient", "Practitioner", "PractitionerRole", "RelatedPerson")
_REF = re.compile(r"^(?P<prefix>.*?)(?P<type>[A-Z][A-Za-z]{1,63})/(?P<id>[A-Za-z0-9\-.]{1,64})"
                  r"(?P<rest>/_history/[^/]+)?$")
_PERSONAL = ("name", "identifier", "telecom", "address", "photo", "contact")
KEY_FILE = ".capture-key"
# Dropped wherever they appear (review #10): free text and codes that name or identify people.
_DROPPED = ("identifier", "extension", "modifierExtension", "telecom", "address", "photo", "contact")


def _redacted_note(note: Any) -> Any:
    """A note's free text may name anyone; only what a rule reads in it is kept (clinical rules
    §10.4: the words that mark heparin ordered for the circuit, fhir/exposure.py)."""
    if not isinstance(note, dict):
        return None
    from ..fhir.exposure import CIRCUIT_WORDS
    text = note.get("text")
    kept = CIRCUIT_WORDS.findall(text) if isinstance(text, str) else []
    return {"text": "[note removed]" + (" " + " ".join(kept) if kept else "")}
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
            if "?" in text or "|" in text:  # a search-style logical reference: Encounter?identifier=…|V99
                rtype = text.split("?", 1)[0].rsplit("/", 1)[-1]
                rtype = rtype if re.fullmatch(r"[A-Z][A-Za-z]{1,63}", rtype) else "Reference"
                return f"{rtype}/{self.pseudonym(rtype, text)}"
            return text
        prefix = m["prefix"]
        if re.match(r"(?i)https?://", prefix):  # the EHR's own host and path: never kept
            prefix = FHIR_SERVER + "/"
        return f"{prefix}{m['type']}/{self.pseudonym(m['type'], m['id'])}{m['rest'] or ''}"

    def _walk(self, value: Any, parent: str = "") -> Any:
        if isinstance(value, list):
            return [self._walk(v, parent) for v in value]
        if not isinstance(value, dict):
            return value
        rtype = value.get("resourceType")
        coding = "code" in value or "system" in value  # a Coding's display is the code's name
        out: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(rtype, str) and key == "id" and isinstance(item, str):
                out[key] = self.pseudonym(rtype, item)
            elif rtype in PERSON_TYPES and key in _PERSONAL:
                if key == "name":
                    out[key] = [{"text": f"{rtype} {self.pseudonym(rtype, str(value.get('id', '')))}"}]
                # identifiers, telecom, address, photo, contact: dropped
            elif key in _DROPPED or (key == "text" and isinstance(item, dict) and "div" in item):
                continue  # identifiers, extensions, narratives (HAPI's name/MRN/DOB): dropped
            elif rtype == "Bundle" and key == "link":
                continue  # self/next links carry the search URL: ?patient=<raw id>
            elif parent == "entry" and key in ("request", "response"):
                continue  # a transaction entry's URL names the resource by its raw id
            elif key in ("reference", "fullUrl", "resourceId", "url") and isinstance(item, str) \
                    and (key != "url" or parent in ("link", "request")):
                out[key] = self._ref(item)
            elif key == "display" and not coding:
                continue  # the display of a reference (a person's name, a ward) is free text
            elif key == "note" and isinstance(item, list):
                out[key] = [_redacted_note(n) for n in item]
            else:
                out[key] = self._walk(item, key)
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


def key_path(directory: Path) -> Path:
    """Where the generated site key is kept: beside the capture directory, never in it, so a
    copied capture directory cannot re-link its pseudonyms (review #10)."""
    return directory.parent / f".{directory.name}{KEY_FILE}"


def _read_key(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))  # a planted symlink is refused
    with os.fdopen(fd, "rb") as fh:
        return fh.read().strip()


def site_key(cfg, directory: Path) -> bytes:
    """CDS_CAPTURE_KEY, else a random key kept (0600) beside the capture directory."""
    if cfg.capture_key:
        return cfg.capture_key.encode()
    path = key_path(directory)
    legacy = directory / KEY_FILE
    if legacy.is_file() and not legacy.is_symlink() and not path.exists():
        os.replace(legacy, path)  # a key kept in the directory before: moved out, same pseudonyms
    key = secrets.token_hex(32).encode()
    tmp = path.parent / f"{path.name}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    try:
        os.link(tmp, path)  # atomic: the first worker's key wins, complete, for every worker
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return _read_key(path)


def _own_directory(directory: Path) -> None:
    """The capture directory is the service user's and closed to group and other: a directory
    someone else made (or opened) would let them read or plant files."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(directory)
    from ..config import ConfigError
    import stat
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"CDS_CAPTURE_DIR={str(directory)!r} is not a directory (a symlink is refused)")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise ConfigError(f"CDS_CAPTURE_DIR={str(directory)!r} is not owned by the service user")
    if st.st_mode & 0o077:
        os.chmod(directory, 0o700)  # ours: close it


def init_app(app: Flask, state) -> None:
    cfg = state.config
    if not cfg.capture_dir:
        return
    directory = Path(cfg.capture_dir)
    _own_directory(directory)
    key = site_key(cfg, directory)
    pseudo = Pseudonymiser(key)
    state.extensions["capture"] = pseudo
    by_site: dict[str, Pseudonymiser] = {}

    def pseudonymiser_for(site: str) -> Pseudonymiser:
        """With CDS_SITES each site's ids get their own key (derived from the site key), so one
        hospital's pseudonyms never link to another's; the implicit site keeps the key itself."""
        if site in ("default", "none", ""):
            return pseudo
        if site not in by_site:
            by_site[site] = Pseudonymiser(hmac.new(key, f"site\x00{site}".encode(), hashlib.sha256).hexdigest().encode())
        return by_site[site]
    log.warning("request capture is ON: pseudonymised hook requests are written to %s", directory)

    @app.after_request
    def _capture(resp: Response) -> Response:
        body = g.pop("cds_capture_body", None)
        if body is None or resp.status_code not in (200, 412) or not isinstance(body, dict):
            return resp
        try:
            site = str(g.get("cds_site_id", "default"))
            write(directory, pseudonymiser_for(site), request.view_args.get("service_id", ""), body, resp,
                  site=site)
        except Exception as exc:  # never fail a hook call for the capture
            log.error("request capture failed: %s", type(exc).__name__)
        return resp


def write(directory: Path, pseudo: Pseudonymiser, service_id: str, body: dict, resp: Response,
          site: str = "default") -> Path:
    now = datetime.now(timezone.utc)
    try:
        answer = orjson.loads(resp.get_data())
    except orjson.JSONDecodeError:
        answer = None
    record = {"service": service_id, "hook": body.get("hook"), "captured_at": now.isoformat(),
              "status": resp.status_code, "request": pseudo.request(body), "response": pseudo.response(answer)}
    if site not in ("default", "none", ""):
        record["site"] = site  # CDS_SITES: whose call it was (replay it with that site's token)
    name = f"{now.strftime('%Y%m%dT%H%M%S%fZ')}-{service_id}-{secrets.token_hex(4)}.json"
    tmp = directory / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # still patient data: owner only
    with os.fdopen(fd, "wb") as fh:
        fh.write(orjson.dumps(record, option=orjson.OPT_INDENT_2))
    os.replace(tmp, directory / name)
    return directory / name
