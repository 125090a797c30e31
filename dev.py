#!/usr/bin/env python3
"""Bootstrap and run: needs only python3 (with its venv module).

    python3 dev.py serve [serve options]   # create .venv, install, run the service
    python3 dev.py test  [pytest options]  # create .venv, install with test extras, run all tests
    python3 dev.py <any cds-service subcommand ...>

Subcommands (`python3 dev.py SUBCOMMAND --help` for each one's options):
    serve            run the service under granian (HTTP/1.1, WSGI)
    assess           assess one patient's FHIR Bundle and print the assessment JSON
    feedback-report  accept and override rates per service and card kind
    example          print an example hook request dated relative to now
    load-fixtures    load the synthetic patients into a FHIR R4 server
    migrate          apply the database's pending schema migrations (run on upgrade)
    fire             act as a CDS client: call a hook for a patient on a FHIR server
    sites            site profiles (CDS_SITES): check a sites file, reload it
    replay           replay captured hook requests against two service versions and diff the cards
    check            black-box conformance self-check of a deployed CDS service
    test             run the test suite (pytest options pass through)

The venv is reinstalled only when pyproject.toml changes. The command replaces this process
(exec), so SIGTERM and SIGINT sent to `dev.py serve` reach the server itself.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("CDS_VENV") or ROOT / ".venv")
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


def ensure_venv(extras: str) -> None:
    stamp = VENV / f".installed-{extras or 'base'}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest and PY.exists():
        return
    if not PY.exists():
        print(f"dev.py: creating virtual environment in {VENV}", file=sys.stderr, flush=True)
        try:
            venv.EnvBuilder(with_pip=True).create(VENV)
        except Exception as exc:  # Debian without python3-venv lands here
            sys.exit(f"dev.py: cannot create a venv ({exc}). On Debian/Ubuntu: apt-get install python3-venv")
    print("dev.py: installing the service and its dependencies (first run only)", file=sys.stderr, flush=True)
    # pip output goes to stderr so `dev.py example NAME | curl ... -d @-` stays clean JSON.
    subprocess.check_call([str(PY), "-m", "pip", "install", "-q", "--upgrade", "pip"], stdout=sys.stderr)
    target = f".[{extras}]" if extras else "."
    subprocess.check_call([str(PY), "-m", "pip", "install", "-q", "-e", target], cwd=ROOT, stdout=sys.stderr)
    stamp.write_text(digest)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "test":
        ensure_venv("test")
        return run([str(PY), "-m", "pytest", *rest])
    ensure_venv("test" if (VENV / ".installed-test").exists() else "")
    return run([str(PY), "-m", "cds_service", command, *rest])


def run(cmd: list[str]) -> int:
    """Replace this process with `cmd` (run from the checkout): signals reach it directly.

    Without exec, `kill <pid of dev.py serve>` stopped dev.py and left the server running."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "nt":  # no exec that keeps the process on Windows: wait for the child
        return subprocess.call(cmd, cwd=ROOT)
    os.chdir(ROOT)
    os.execv(cmd[0], cmd)
    return 0  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
