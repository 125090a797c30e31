#!/usr/bin/env python3
"""Bootstrap and run: needs only python3 (with its venv module).

    python3 dev.py serve [serve options]   # create .venv, install, run the service (dev profile:
                                           # info cards repeat on every call; --production: not)
    python3 dev.py test  [pytest options]  # create .venv, install with test extras, run all tests
                                           # (in parallel, cores + 1 workers; what CI runs)
    python3 dev.py test --fast             # unit tests only: no servers, no browser (edit loop)
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
    dev-fhir         local FHIR server with the synthetic patients and the SMART launcher the
                     CDS Hooks Sandbox needs to open a card's assessment view (`fhir` for short)
    test             run the test suite in parallel (--fast: unit tests only; pytest options pass through)

The venv is reinstalled only when pyproject.toml changes. The command replaces this process
(exec), so SIGTERM and SIGINT sent to `dev.py serve` reach the server itself.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("CDS_VENV") or ROOT / ".venv")
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


@contextmanager
def _install_lock():
    """One install at a time: `dev.py serve` and `dev.py fhir` started together on a fresh clone
    both created the venv, and the second found python without pip yet (issue 22)."""
    if os.name == "nt":
        yield
        return
    import fcntl
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / (VENV.name + ".lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            print("dev.py: waiting for another dev.py to finish installing", file=sys.stderr, flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_venv(extras: str) -> None:
    stamp = VENV / f".installed-{extras or 'base'}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()

    def current() -> bool:
        return stamp.exists() and stamp.read_text() == digest and PY.exists()

    if current():
        return
    with _install_lock():
        if not current():   # another dev.py may have installed it while this one waited
            _install(extras, stamp, digest)


def _install(extras: str, stamp: Path, digest: str) -> None:
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
        keep_bytecode()
        return run([str(PY), "-m", "pytest", *test_args(rest)])
    if command == "fhir":
        command = "dev-fhir"
    if command == "serve" and "--production" not in rest and "--dev" not in rest \
            and os.environ.get("CDS_ENV", "").strip().lower() != "production":
        rest = ["--dev", *rest]  # testers reopen a patient and expect the card again (issue 22)
    ensure_venv("test" if (VENV / ".installed-test").exists() else "")
    return run([str(PY), "-m", "cds_service", command, *rest])


def test_args(rest: list[str]) -> list[str]:
    """pytest-xdist with one worker more than the cores (at most 4), work-stealing, unless -n is
    given (-n 0: one process, e.g. for pdb).
    --fast (tests/conftest.py) keeps the unit tests only."""
    if any(a == "-n" or a.startswith(("-n", "--numprocesses")) for a in rest):
        return rest
    # worksteal: an idle worker takes queued tests from a busy one. With the default (load) one
    # worker was left with a queue of long tests at the end (--fast: 137 s vs 91 s, issue 22).
    dist = [] if any(a.startswith(("--dist", "-d")) for a in rest) else ["--dist", "worksteal"]
    # One more worker than cores: many tests wait (deadlines, flush windows, servers starting), and
    # a third worker on this 2-core machine fills those waits (issue 22, quiet: full suite 209 ->
    # 184 s, --fast 65 -> 55 s). At most 4: each worker starts its own Medplum server and chromium.
    return ["-n", str(workers()), *dist, *rest]


def workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may use (containers, taskset)
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return min(4, cores + 1)


def keep_bytecode() -> None:
    """With PYTHONDONTWRITEBYTECODE set, every pytest worker and every `cds-service` subprocess a
    test starts compiled the package, the tests and pytest's assertion rewrites from source again
    (~7 s of CPU per worker, issue 22). Compiled files go to the venv instead, still not into the
    checkout (which is what the variable is usually set for)."""
    if os.environ.get("PYTHONDONTWRITEBYTECODE") and not os.environ.get("PYTHONPYCACHEPREFIX"):
        del os.environ["PYTHONDONTWRITEBYTECODE"]
        os.environ["PYTHONPYCACHEPREFIX"] = str(VENV / "pycache")


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
