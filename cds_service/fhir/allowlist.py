"""Which FHIR servers the service may call (CDS_FHIR_ALLOWLIST): the SSRF and token-leak guard.

A request's `fhirServer` is attacker-controlled input, and the service sends the EHR's
access token to it, so it is checked on the parsed URL, never with a string prefix:

- scheme and host must equal an entry's (case-insensitive, trailing dot ignored);
  `http://localhost.evil.com` and `http://localhost@evil.com` do not match `http://localhost`;
- an entry with a port matches only that port; an entry without one matches the scheme's
  default port, or any port when its host is loopback (so the default list admits a
  local test server on :8080);
- an entry's path matches on a segment boundary: `/fhir` admits `/fhir` and `/fhir/r4`,
  not `/fhirx`;
- `*` admits any server (config accepts it only with CDS_AUTH=off);
- whatever the list says, `https` is required unless the host is loopback
  (127.0.0.0/8, ::1, localhost), and URLs with user info, a query, a fragment,
  `.`/`..` path segments or a `;` in the path (`..;` is `..` to Tomcat) are refused,
  plain, percent-encoded or encoded twice. The same check applies to every followed link.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True)
class ServerURL:
    scheme: str
    host: str
    port: int | None  # None: not given in the URL
    path: str  # without trailing slash; "" for the root

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else (443 if self.scheme == "https" else 80)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_server_url(url: str) -> ServerURL:
    """Parse an absolute http(s) base URL, or raise ValueError saying why it is unusable."""
    if not isinstance(url, str) or not url or any(c.isspace() for c in url):
        raise ValueError("not an absolute URL")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError("scheme must be http or https")
    if "@" in parts.netloc:
        raise ValueError("user info in the URL is not allowed")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ValueError("a query or fragment is not allowed in a base URL")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise ValueError("no host")
    port = parts.port  # raises ValueError on a bad port
    if _bad_path(parts.path):
        raise ValueError("'.' or '..' path segments (plain or encoded) are not allowed")
    return ServerURL(scheme, host, port, parts.path.rstrip("/"))


def _bad_path(path: str) -> bool:
    """Dot segments, `;` path parameters, or an encoded slash/backslash that a server may
    decode into one. Checked on the path decoded once and twice (a proxy may decode first).

    `;` is refused outright (issue 21 M4): Tomcat-based servers such as HAPI read
    `/fhir/..;/admin` as `/admin`, and FHIR REST paths never carry path parameters."""
    for text in (path, unquote(path), unquote(unquote(path))):
        lowered = text.lower()
        if "%2f" in lowered or "%5c" in lowered or "\\" in text or ";" in text:
            return True
        if any(segment in (".", "..") for segment in text.split("/")):
            return True
    return False


def _entry_admits(entry: ServerURL, server: ServerURL) -> bool:
    if entry.scheme != server.scheme or entry.host != server.host:
        return False
    if (entry.port is not None or not is_loopback(entry.host)) \
            and entry.effective_port != server.effective_port:
        return False
    return server.path == entry.path or server.path.startswith(entry.path + "/")


def refusal_reason(url: str, allowlist: tuple[str, ...]) -> str | None:
    """None when `url` may be called; otherwise a short reason (safe to log: no token)."""
    try:
        server = parse_server_url(url)
    except ValueError as exc:
        return f"unusable fhirServer URL: {exc}"
    if server.scheme != "https" and not is_loopback(server.host):
        return "https is required for a non-loopback fhirServer"
    if "*" in allowlist:
        return None
    for raw in allowlist:
        try:
            entry = parse_server_url(raw)
        except ValueError:
            continue  # a malformed entry admits nothing
        if _entry_admits(entry, server):
            return None
    return "fhirServer does not match any CDS_FHIR_ALLOWLIST entry"


def same_base(url: str, base: str) -> bool:
    """True when absolute `url` lies under `base` (scheme, host, port, path boundary).

    Used for `link[relation=next]` URLs, which come from the client or the FHIR server
    and must never send the token anywhere but fhirServer."""
    try:
        target = urlsplit(url)
        b = parse_server_url(base)
        host = (target.hostname or "").rstrip(".").lower()
        port = target.port
    except ValueError:
        return False
    if "@" in target.netloc or target.scheme.lower() != b.scheme or host != b.host:
        return False
    t = ServerURL(b.scheme, host, port, target.path.rstrip("/"))
    if t.effective_port != b.effective_port:
        return False
    if _bad_path(target.path):
        return False
    return t.path == b.path or target.path.startswith(b.path + "/") or target.path == b.path + "/"


def loggable_url(url: str) -> str:
    """scheme://host[:port]/path of `url` for a log line: no user info, query or fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparsable URL)"
    return f"{parts.scheme}://{host}{port}{parts.path}"[:300]
