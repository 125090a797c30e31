"""Issue 24: the README "Sites" section works as written: its TOML blocks are valid sites files,
the two-hospital block is examples/sites/two-hospitals.toml, and `cds-service serve` runs it."""
from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "storage"))
from test_replicas import Replica  # noqa: E402

from cds_service.cli import main as cli_main  # noqa: E402
from cds_service.sites.model import parse_sites, read_sites_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "sites" / "two-hospitals.toml"


def _section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Sites: several hospitals on one service")
    return text[start:text.index("\n## ", start + 5)]


def _blocks() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", _section(), flags=re.S)


def test_the_two_hospital_block_is_the_example_file():
    example, conversion = _blocks()
    _, from_file = read_sites_file(str(EXAMPLE))
    from_readme = parse_sites(example.encode(), "README", EXAMPLE.parent)
    assert from_readme.sites == from_file.sites
    assert cli_main(["sites", "check", str(EXAMPLE)]) == 0


def test_the_conversion_block_is_a_valid_sites_file(tmp_path):
    _, conversion = _blocks()
    (tmp_path / "policy.json").write_text("{}")
    (tmp_path / "sites.toml").write_text(conversion)
    assert cli_main(["sites", "check", str(tmp_path / "sites.toml")]) == 0


def test_serve_runs_the_example_as_written(tmp_path):
    replica = Replica(tmp_path, "readme", {"CDS_SITES": str(EXAMPLE),
                                           "CDS_DATABASE": str(tmp_path / "cds.sqlite3")})
    try:
        import requests
        services = requests.get(replica.base + "/cds-services", timeout=10).json()["services"]
        assert [s["id"] for s in services] == ["coagulopathy-risk", "anticoagulant-order-check",
                                               "anticoagulant-order-sign"]
        resp = replica.post("/cds-services/coagulopathy-risk", {"hook": "patient-view"})
        assert resp.status_code == 401 and "authentication check failed" in resp.text
        assert requests.get(replica.base + "/readyz", timeout=30).status_code in (200, 503)
    finally:
        replica.stop()
