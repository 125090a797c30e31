"""Start-up (issue 14): every CDS_* variable checked before binding, production warnings,
`dev.py` signal forwarding and help, `serve --help`."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cds_service import cli
from cds_service.config import Config, production_warnings, unknown_variables

ROOT = Path(__file__).resolve().parent.parent


def serve(env: dict, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    return subprocess.run([sys.executable, "-m", "cds_service", "serve", "--port", "1", *args], cwd=ROOT,
                          env={**base, **env}, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("name, value, allowed", [
    ("CDS_LOG_LEVEL", "LOUD", "one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ("CDS_FHIR_TIMEOUT", "abc", "a number of seconds > 0"),
    ("CDS_FHIR_TIMEOUT", "0", "a number of seconds > 0"),
    ("CDS_FHIR_CACHE_SIZE", "many", "an integer from 0 to"),
    ("CDS_MAX_BODY_BYTES", "-1", "an integer from 1 to"),
    ("CDS_DISCOVERY_OPEN", "maybe", "use true or false"),
    ("CDS_ENV", "prod", "one of development, test, staging, production"),
    ("CDS_AUTH", "sometimes", "one of off, required"),
    ("CDS_PUBLIC_BASE_URL", "cds.example.org", "an absolute http(s) URL"),
    ("CDS_WORKERS", "two", "an integer from 1 to 64"),
    ("CDS_HEADER_TIMEOUT", "120", "<= 60"),
])
@pytest.mark.server  # runs `python -m cds_service serve` in a subprocess: left out by --fast
def test_a_bad_variable_stops_serve_with_one_line_and_exit_2(tmp_path, name, value, allowed):
    """Before: `CDS_LOG_LEVEL=LOUD` printed "Listening at" then worker tracebacks, and
    `CDS_FHIR_TIMEOUT=abc` gave an error that did not name the variable."""
    done = serve({"CDS_DATABASE": str(tmp_path / "db.sqlite3"), name: value})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"cds-service: {name}={value!r} is not valid: ") and allowed in lines[0]
    assert "Listening" not in done.stdout + done.stderr


@pytest.mark.server  # runs `python -m cds_service serve` in a subprocess: left out by --fast
def test_a_database_whose_directory_cannot_be_created_stops_serve(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    path = blocker / "sub" / "cds.sqlite3"
    done = serve({"CDS_DATABASE": str(path)})
    assert done.returncode == 2
    assert done.stderr.strip() == (f"cds-service: CDS_DATABASE={str(path)!r} is not valid: "
                                   f"{str(blocker)!r} is not a directory")


@pytest.mark.server  # runs `python -m cds_service serve` in a subprocess: left out by --fast
@pytest.mark.skipif(os.geteuid() == 0, reason="root may write any directory")
def test_an_unwritable_database_directory_stops_serve(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    done = serve({"CDS_DATABASE": str(locked / "cds.sqlite3")})
    assert done.returncode == 2 and "is not writable" in done.stderr


@pytest.mark.server  # runs `python -m cds_service serve` in a subprocess: left out by --fast
def test_bad_serve_flags_exit_2(tmp_path):
    done = serve({"CDS_DATABASE": str(tmp_path / "db")}, "--threads", "0")
    assert done.returncode == 2 and done.stderr.strip() == "cds-service: --threads=0 is not valid: 1 to 512"


def test_production_warnings():
    prod = Config(env="production", auth="required", trusted_issuers="t.json")
    text = " ".join(production_warnings(prod))
    assert "CDS_FHIR_ALLOWLIST is the default" in text and "CDS_PUBLIC_BASE_URL is unset" in text
    assert "CDS_AUTH=off" not in text
    insecure = Config(env="production", auth="off", allow_insecure_production=True)
    assert any(w.startswith("CDS_AUTH=off in production") for w in production_warnings(insecure))
    configured = Config(env="production", auth="required", trusted_issuers="t.json",
                        fhir_allowlist=("https://fhir.example.org/r4",), public_base_url="https://cds.example.org")
    assert production_warnings(configured) == []
    assert production_warnings(Config()) == []  # development: no noise


def test_serve_prints_the_production_warnings_and_unknown_variables(tmp_path, monkeypatch, capsys):
    for key in [k for k in os.environ if k.startswith("CDS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("CDS_DATABASE", str(tmp_path / "db"))
    monkeypatch.setenv("CDS_ENV", "development")  # serve --production writes it: restored after
    for key in ("CDS_BODY_TIMEOUT", "CDS_THREADS", "CDS_ACCESS_LOG"):  # written for the workers
        monkeypatch.setenv(key, "1" if key != "CDS_ACCESS_LOG" else "true")
    monkeypatch.setenv("CDS_ALLOW_INSECURE_PRODUCTION", "true")
    monkeypatch.setenv("CDS_FHIR_TIMOUT", "5")  # a typo
    monkeypatch.setattr(cli.os, "execv", lambda path, argv: None)
    monkeypatch.setattr(cli, "_port_in_use", lambda host, port: None)
    cli.main(["serve", "--production"])
    # Issue 22: every line is JSON (the first one too), so the warnings are JSON lines.
    warnings = [line["msg"] for line in map(json.loads, capsys.readouterr().err.splitlines())
                if line["level"] == "WARNING"]
    for start in ("CDS_FHIR_TIMOUT is set but not a known setting", "CDS_FHIR_ALLOWLIST is the default",
                  "CDS_PUBLIC_BASE_URL is unset", "CDS_AUTH=off in production"):
        assert any(w.startswith(start) for w in warnings), start


def test_unknown_variables_knows_every_documented_one():
    documented = {line.split("`")[1] for line in (ROOT / "README.md").read_text().splitlines()
                  if line.startswith("| `CDS_")}
    documented |= {"CDS_FHIR_CACHE_SIZE"}  # shares a row with CDS_FHIR_CACHE_TTL
    assert unknown_variables({name: "x" for name in documented}) == []


def test_granian_command_line_carries_the_settings():
    from cds_service.config import ServerConfig

    argv = cli.granian_argv(ServerConfig(host="0.0.0.0", port=9000, workers=3, threads=16,
                                         header_timeout=2.5, shutdown_timeout=12))
    pairs = dict(zip(argv, argv[1:]))
    # Issue 21: ASGI, so granian's event loop reads bodies; the app's threads are serving.Front's
    # pool (CDS_THREADS, set by `serve`), not granian's blocking threads.
    assert pairs["--interface"] == "asgi" and argv[-1] == "cds_service.asgi:app"
    assert (pairs["--host"], pairs["--port"], pairs["--workers"]) == ("0.0.0.0", "9000", "3")
    assert "--blocking-threads" not in argv
    assert pairs["--http1-header-read-timeout"] == "2500" and pairs["--workers-kill-timeout"] == "12"


def test_serve_help_describes_every_flag_with_its_default(capsys):
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    out = capsys.readouterr().out
    parser = cli.build_parser()
    serve_parser = parser._subparsers._group_actions[0].choices["serve"]
    for action in serve_parser._actions:
        if action.dest == "help":
            continue
        assert action.help and "default" in action.help, action.option_strings


@pytest.mark.server  # runs `python -m cds_service serve` in a subprocess: left out by --fast
def test_dev_help_lists_every_subcommand():
    out = subprocess.run([sys.executable, str(ROOT / "dev.py"), "--help"], capture_output=True, text=True,
                         timeout=30).stdout
    names = cli.build_parser()._subparsers._group_actions[0].choices
    for name in [*names, "test"]:
        assert f"\n    {name} " in out, name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.server
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_dev_py_serve_passes_signals_to_the_server(tmp_path, sig):
    """Before: `kill <pid of dev.py serve>` left gunicorn running."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env.update(CDS_VENV=sys.prefix, CDS_DATABASE=str(tmp_path / "db.sqlite3"))
    proc = subprocess.Popen([sys.executable, str(ROOT / "dev.py"), "serve", "--port", str(port), "--workers", "1"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        os.kill(proc.pid, sig)  # the pid dev.py started with, not its process group
        proc.wait(30)
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
        # Workers leave within the shutdown timeout; poll, no fixed sleep (slow under xdist).
        deadline = time.monotonic() + 15
        while True:
            leftover = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split()
            if not leftover or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert leftover == [], f"processes left running: {leftover}"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize("name, value, message", [
    ("CDS_FHIR_ALLOWLIST", "fhir.example.org", "CDS_FHIR_ALLOWLIST entry 'fhir.example.org' is not valid: scheme must be http or https"),
    ("CDS_FHIR_ALLOWLIST", "https://fhir.example.org,ftp://x", "CDS_FHIR_ALLOWLIST entry 'ftp://x' is not valid"),
    ("CDS_CORS_ORIGINS", "https://sandbox.cds-hooks.org/", "CDS_CORS_ORIGINS entry 'https://sandbox.cds-hooks.org/' is not valid"),
])
@pytest.mark.server  # runs `python -m cds_service serve` in a subprocess: left out by --fast
def test_list_entries_that_would_silently_match_nothing_stop_serve(tmp_path, name, value, message):
    done = serve({"CDS_DATABASE": str(tmp_path / "db.sqlite3"), name: value})
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith(f"cds-service: {message}"), done.stderr


@pytest.mark.server  # runs `python -m cds_service serve` in a subprocess: left out by --fast
def test_serve_refuses_a_schema_dir_pointing_nowhere(tmp_path):
    """Issue 21: CDS_SCHEMA_DIR pointing nowhere started the service, /healthz stayed 200 and
    every hook answered 500. Now `serve` stops before binding, with one line and exit 2."""
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env.update(CDS_SCHEMA_DIR=str(tmp_path / "nowhere"), CDS_DATABASE=str(tmp_path / "db.sqlite3"))
    done = subprocess.run([sys.executable, "-m", "cds_service", "serve", "--port", "0"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-500:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("cds-service:")]
    assert len(lines) == 1 and "CDS_SCHEMA_DIR=" in lines[0] and "nowhere" in lines[0]
