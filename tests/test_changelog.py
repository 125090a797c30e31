"""CHANGELOG.md (issue 22): every release is `## <version> — <YYYY-MM-DD>`, newest first, and the
newest is the version `cds-service --version` prints. Unreleased changes sit above, undated."""
from __future__ import annotations

import re
import subprocess
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADING = re.compile(r"^## (\S+)(?: — (\d{4}-\d{2}-\d{2}))?$", re.M)
VERSION = re.compile(r"^\d+\.\d+\.\d+$")


def _releases() -> list[tuple[str, str]]:
    return [(v, d) for v, d in HEADING.findall((ROOT / "CHANGELOG.md").read_text()) if v != "Unreleased"]


def test_every_release_is_versioned_dated_and_newest_first():
    releases = _releases()
    assert len(releases) >= 2
    for version, day in releases:
        assert VERSION.match(version) and day, (version, day)
        date.fromisoformat(day)
    versions = [tuple(map(int, v.split("."))) for v, _ in releases]
    assert versions == sorted(versions, reverse=True) and len(set(versions)) == len(versions)
    assert [d for _, d in releases] == sorted((d for _, d in releases), reverse=True)


def test_newest_release_is_what_version_prints():
    out = subprocess.run([sys.executable, "-m", "cds_service", "--version"], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}).stdout
    printed = out.split()[1]          # "cds-service 0.2.0 (git v0.2.0-3-gabc1234)"
    assert printed == _releases()[0][0], (out, _releases()[0])
