"""`cds-service sites check FILE` and `cds-service sites reload` (issue 24, README "Sites").

check: validate a sites file (policies and codes loaded) and print each site's effective
  configuration; keys appear as SHA-256 fingerprints of their public key, never as material.
reload: validate the file (CDS_SITES unless given) and record it in the audit database as
  the accepted configuration: every worker of every replica on that database applies it within
  a few seconds. A bad file is refused with one line (exit 2) and nothing changes.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization


def key_fingerprint(key) -> str:
    """sha256 of the public key's SubjectPublicKeyInfo (DER), 16 hex digits."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()[:16]


def _file_digest(path: str) -> str:
    try:
        return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError:
        return "unreadable"


def _policy_changes(policy) -> str:
    """The keys of a site's policy that differ from the defaults: its committee's choices."""
    import json
    from ..logic.policy import Policy
    default = Policy.default().values
    changed = [f"{k} = {json.dumps(v)[:80]}" for k, v in sorted(policy.values.items()) if v != default.get(k)]
    return "; ".join(changed) if changed else "none"


def describe(parsed, policies: dict | None = None) -> list[str]:
    from ..sites.model import weak_url  # review #12: say what production would refuse
    lines = [f"sites file {parsed.source} (sha256:{parsed.sha256[:16]}): {len(parsed.sites)} site(s)"]
    for site in parsed.sites.values():
        lines += [f"site {site.id}",
                  f"  mode: {site.mode}",
                  f"  policy: {site.policy_path + ' (' + _file_digest(site.policy_path) + ')' if site.policy_path else 'defaults'}",
                  *([f"  policy keys differing from the defaults: {_policy_changes(policies[site.id][0])}"]
                    if policies else []),
                  f"  services: {', '.join(site.services)}",
                  f"  fhir_allowlist: {', '.join(site.fhir_allowlist)}",
                  *[f"  warning: fhir_allowlist entry {e} is {why} (refused with CDS_ENV=production)"
                    for e in site.fhir_allowlist if (why := weak_url(e))],
                  f"  discovery_open: {str(site.discovery_open).lower()}"]
        for issuer in site.issuers:
            trusted = issuer.trusted
            lines.append(f"  issuer {trusted.iss}")
            lines.append(f"    algorithms: {', '.join(issuer.algorithms)}")
            if trusted.keys is not None:
                for key in trusted.keys.values():
                    kind = f"{key.kty} {key.crv}" if key.crv else f"RSA-{key.key.key_size}"
                    lines.append(f"    key {key.kid}: {kind}, {key_fingerprint(key.key)}")
            else:
                lines.append(f"    jwks_url: {trusted.jwks_url}")
                why = weak_url(trusted.jwks_url)
                if why:
                    lines.append(f"    warning: jwks_url is {why} (refused with CDS_ENV=production)")
                extra = sorted(trusted.jku - {trusted.jwks_url})
                if extra:
                    lines.append(f"    jku: {', '.join(extra)}")
            lines.append(f"    tenant: {', '.join(sorted(trusted.tenants)) if trusted.tenants else 'any'}")
    return lines


def _validated(path: str):
    from ..sites.model import read_sites_file
    from ..sites.runtime import load_policies
    raw, parsed = read_sites_file(path)
    return raw, parsed, load_policies(parsed)


def _check(args: argparse.Namespace) -> int:
    from ..sites.model import SitesFileError
    try:
        _, parsed, policies = _validated(args.file)
    except SitesFileError as exc:
        print(f"cds-service sites: refused: {exc}", file=sys.stderr)
        return 2
    print("\n".join(describe(parsed, policies)))
    return 0


def _reload(args: argparse.Namespace) -> int:
    from ..sites.model import SitesFileError
    from ..sites.runtime import publish
    from ..storage import StorageError, open_storage
    path = args.file or os.environ.get("CDS_SITES", "")
    if not path:
        print("cds-service sites: no sites file (give FILE or set CDS_SITES)", file=sys.stderr)
        return 2
    try:
        raw, parsed, _ = _validated(path)
    except SitesFileError as exc:
        print(f"cds-service sites: refused, the running configuration stays: {exc}", file=sys.stderr)
        return 2
    database = args.database or os.environ.get("CDS_DATABASE", "") or "cds_service.sqlite3"
    from ..storage import is_postgres
    if not is_postgres(database) and not os.path.isfile(database):
        # Never create a database the running service does not use and report success.
        print(f"cds-service sites: no database at {database!r}: give the running service's "
              "CDS_DATABASE (--database)", file=sys.stderr)
        return 2
    try:
        from ..sites.model import file_digests
        publish(open_storage(database), raw, path, str(Path(path).resolve().parent),
                os.environ.get("CDS_SITES_RELOAD_KEY", ""), file_digests(parsed))
    except StorageError as exc:
        print(f"cds-service sites: not recorded: {exc}", file=sys.stderr)
        return 2
    print(f"accepted sites file {path} (sha256:{parsed.sha256[:16]}, {len(parsed.sites)} site(s)); "
          "every worker and replica on this database applies it within 10 s"
          + ("" if os.environ.get("CDS_SITES_RELOAD_KEY") else
             " (unsigned: workers with CDS_SITES_RELOAD_KEY set ignore it)"))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("sites", help="site profiles (CDS_SITES): check a sites file, reload it")
    verbs = p.add_subparsers(dest="sites_command", required=True)
    check = verbs.add_parser("check", help="validate a sites file and print each site's configuration")
    check.add_argument("file")
    check.set_defaults(func=_check)
    reload = verbs.add_parser("reload", help="validate the sites file and make every worker and replica apply it")
    reload.add_argument("file", nargs="?", help="default: $CDS_SITES")
    reload.add_argument("--database", help="default: $CDS_DATABASE (the running service's)")
    reload.set_defaults(func=_reload)
