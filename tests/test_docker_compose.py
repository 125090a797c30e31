"""docker-compose.yml and the Dockerfile, checked by parsing (docker cannot run in CI)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> list[str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_three_services(compose):
    default = {name for name, svc in compose["services"].items() if not svc.get("profiles")}
    assert default == {"hapi", "cds-service", "loader"}


SCALE = {"postgres", "redis", "migrate", "cds-a", "cds-b", "lb"}


def test_scale_profile_two_replicas_on_one_postgres_behind_a_pinned_balancer(compose):
    """Issue 16: `docker compose --profile scale up` - PostgreSQL, Redis, a one-shot migrate,
    two replicas and nginx; nothing of it starts without the profile."""
    services = compose["services"]
    scale = {name for name, svc in services.items() if "scale" in (svc.get("profiles") or [])}
    assert scale == SCALE
    for name in ("postgres", "redis", "lb"):
        image, _, tag = services[name]["image"].partition(":")
        assert re.fullmatch(r"\d+\.\d+(\.\d+)?(-[a-z0-9]+)?", tag), f"{name}: pin an exact release, never latest"
    assert services["postgres"]["image"].startswith("postgres:") and services["lb"]["image"].startswith("nginx:")
    migrate = services["migrate"]
    assert migrate["command"] == ["cds-service", "migrate"] and migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    ports = set()
    for name in ("cds-a", "cds-b"):
        replica = services[name]
        env = replica["environment"]
        assert env["CDS_DATABASE"].startswith("postgresql://") and "@postgres:5432/" in env["CDS_DATABASE"]
        assert env == migrate["environment"], "replicas and migrate must share one configuration"
        assert env["CDS_CACHE"].startswith("redis://redis:")
        assert replica["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert replica["command"][:2] == ["cds-service", "serve"]   # serve checks the schema version
        ports.add(replica["command"][replica["command"].index("--port") + 1])
        assert replica["network_mode"] == "service:hapi"
        assert "/readyz" in " ".join(replica["healthcheck"]["test"])
    conf_path = next(v.split(":")[0] for v in services["lb"]["volumes"] if v.endswith("nginx.conf:ro"))
    conf = (ROOT / conf_path).read_text()
    assert all(f"127.0.0.1:{port}" in conf for port in ports) and "listen 8090" in conf
    assert "127.0.0.1:8090:8090" in services["hapi"]["ports"]


def test_hapi_is_pinned_r4_on_8080_with_a_healthcheck(compose):
    hapi = compose["services"]["hapi"]
    image, _, tag = hapi["image"].partition(":")
    assert image == "hapiproject/hapi"
    assert re.fullmatch(r"v\d+\.\d+\.\d+(-\d+)?", tag), "pin an exact release, never latest"
    assert hapi["environment"]["hapi.fhir.fhir_version"] == "R4"
    assert "127.0.0.1:8080:8080" in hapi["ports"]
    check = hapi["healthcheck"]
    assert check["test"][0] == "CMD" and "/fhir/metadata" in check["test"][-1]
    # The image is distroless: the check must use the JVM on a file we mount, not curl or a shell.
    mounted = {v.split(":")[1]: v.split(":")[0] for v in hapi["volumes"]}
    script = next(arg for arg in check["test"] if arg.endswith(".java"))
    assert (ROOT / mounted[script]).is_file()
    assert not any(tool in " ".join(check["test"]) for tool in ("curl", "wget", "sh -c"))
    assert check["retries"] * _seconds(check["interval"]) + _seconds(check["start_period"]) >= 300


def _seconds(value: str) -> int:
    return int(value.rstrip("s"))


def test_service_is_built_here_healthchecked_and_allowlisted_to_hapi(compose):
    svc = compose["services"]["cds-service"]
    assert svc["build"] == "."
    env = svc["environment"]
    # It shares HAPI's network namespace, so HAPI is a loopback URL and the https rule holds.
    assert svc["network_mode"] == "service:hapi"
    assert "127.0.0.1:8000:8000" in compose["services"]["hapi"]["ports"]
    allowlist = env["CDS_FHIR_ALLOWLIST"].split(",")
    assert "http://localhost:8080/fhir" in allowlist and "*" not in allowlist
    assert all(re.match(r"^http://(localhost|127\.0\.0\.1)[:/]", url) for url in allowlist)
    assert env["CDS_AUTH"] == "off" and env["CDS_SCHEMA_DIR"] == "/app/conformance/schemas"
    assert "/healthz" in " ".join(svc["healthcheck"]["test"])
    assert svc["depends_on"]["hapi"]["condition"] == "service_healthy"


def test_loader_runs_once_after_hapi_is_healthy(compose):
    loader = compose["services"]["loader"]
    assert loader["depends_on"]["hapi"]["condition"] == "service_healthy"
    assert loader["command"][:4] == ["cds-service", "load-fixtures", "--fhir-server", "http://hapi:8080/fhir"]
    assert loader["command"][loader["command"].index("--dir") + 1] == "/app/conformance/patients"
    assert loader["restart"] == "no"
    assert loader["image"] == compose["services"]["cds-service"]["image"]


def test_dockerfile_essentials(dockerfile):
    assert dockerfile[0] == "FROM python:3.11-slim"
    assert any(re.fullmatch(r"RUN pip install \.", line) for line in dockerfile)
    assert "COPY conformance ./conformance" in dockerfile
    env = " ".join(line for line in dockerfile if line.startswith("ENV"))
    assert "CDS_SCHEMA_DIR=/app/conformance/schemas" in env
    assert any(line.startswith("HEALTHCHECK") and "/healthz" in line for line in dockerfile)
    cmd = next(line for line in dockerfile if line.startswith("CMD"))
    # granian through `serve`, so the container gets the start-up checks (issue 14)
    assert cmd == 'CMD ["cds-service", "serve", "--host", "0.0.0.0", "--port", "8000"]'
    assert "STOPSIGNAL SIGTERM" in dockerfile
    assert any(line.startswith("USER ") and line != "USER root" for line in dockerfile)
    assert "EXPOSE 8000" in dockerfile


def test_dockerignore_keeps_the_image_small():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)


def test_restart_policies_and_hapi_data_on_a_volume(compose):
    """Issue 14: a restart policy, HAPI's database on a volume, the loader re-runnable."""
    hapi, svc = compose["services"]["hapi"], compose["services"]["cds-service"]
    assert hapi["restart"] == svc["restart"] == "unless-stopped"
    url = hapi["environment"]["spring.datasource.url"]
    assert url.startswith("jdbc:h2:file:")
    path = url.removeprefix("jdbc:h2:file:")
    mounts = {v.split(":")[1]: v.split(":")[0] for v in hapi["volumes"]}
    assert any(path.startswith(target + "/") and name in compose["volumes"] for target, name in mounts.items())
    # stop_grace_period above the service's shutdown timeout (30 s), so SIGKILL comes after it
    assert int(svc["stop_grace_period"].rstrip("s")) > 30


def test_compose_documents_the_policy_mount_and_the_reload():
    text = (ROOT / "docker-compose.yml").read_text()
    assert "# CDS_POLICY: /etc/cds-service/policy.toml" in text
    assert "# - ./my-policy.toml:/etc/cds-service/policy.toml:ro" in text
    assert "docker compose run --rm loader" in text
