"""`cds-service` command line: serve, assess, and the integration tools.

Subcommands are registered in one table (COMMANDS) so each lives next to its code.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent  # cds_service/
EXAMPLES = PACKAGE.parent / "examples"
DEV_POLICY = PACKAGE / "data" / "dev-policy.toml"  # issue 22: the dev profile


def _serve(args: argparse.Namespace) -> int:
    from ..config import (ConfigError, ServerConfig, check_database_path, load_config,
                         production_warnings, unknown_variables)
    from ..fhir.codes import CodeDataError, load_codes
    from ..logic.policy import Policy, PolicyError
    from ..security import check_startup

    if args.production:
        os.environ["CDS_ENV"] = "production"  # granian's workers re-check it (wsgi.py)
    if args.dev:
        if os.environ.get("CDS_ENV", "").strip().lower() == "production":
            print("cds-service: --dev (info cards repeat on every call) is refused with CDS_ENV=production",
                  file=sys.stderr)
            return 2
        os.environ.setdefault("CDS_POLICY", str(DEV_POLICY))  # a site's own policy file wins
    try:
        # Everything is parsed and checked here, before a port is bound: a bad value stops
        # the command with one line naming the variable and exit code 2.
        server = ServerConfig.from_env()
        flags = {k: getattr(args, k) for k in ("host", "port", "workers", "threads", "header_timeout",
                                               "body_timeout", "shutdown_timeout")}
        server = replace(server, **{k: v for k, v in flags.items() if v is not None})
        if args.no_access_log:
            server = replace(server, access_log=False)
        _check_server_flags(server)
        cfg = load_config()
        check_startup(cfg)  # production without auth, a broken trust file: stop here, clearly
        check_database_path(cfg.database)
        from ..web.schemas import check_startup as check_schemas
        check_schemas()  # CDS_SCHEMA_DIR pointing nowhere: stop here, not 500 on every hook
        policy = Policy.load(cfg.policy)  # a bad policy file stops here, not in every worker
        from ..cards.terminology import check_policy
        check_policy(policy)  # issue 23: vocabulary.system_base is a URL
        load_codes(policy["codes.extra_file"])
        if cfg.sites:  # issue 24: a bad sites file (or a site's policy) stops here, with one line
            from ..sites.model import read_sites_file
            from ..sites.runtime import load_policies
            load_policies(read_sites_file(cfg.sites, production=cfg.env == "production")[1])
    except (ConfigError, PolicyError, CodeDataError) as exc:
        print(f"cds-service: {exc}", file=sys.stderr)
        return 2
    for name in unknown_variables():
        _say(logging.WARNING, f"{name} is set but not a known setting (a typo?); it is ignored")
    for warning in production_warnings(cfg):
        _say(logging.WARNING, warning)
    problem = check_schema_version(cfg)  # issue 16: never serve against a database at the wrong version
    if problem:
        print(f"cds-service: {problem}", file=sys.stderr)
        return 2
    # L6: granian's listener uses SO_REUSEPORT, so a second server on a bound port would start
    # silently and share its traffic; a plain test bind tells.
    busy = _port_in_use(server.host, server.port)  # one line and exit 2, not granian's traceback
    if busy:
        print(f"cds-service: {busy}", file=sys.stderr)
        return 2
    base = f"http://{server.host}:{server.port}"
    _say(logging.INFO, "cds-service starting", discovery=f"{base}/cds-services", workers=server.workers,
         threads=server.threads, info_repeat_hours=policy["cards.info_repeat_hours"], policy=policy.source,
         try_it=f"{sys.executable} -m cds_service example sic-positive | curl -s -X POST "
                f"{base}/cds-services/coagulopathy-risk -H 'Content-Type: application/json' -d @-")
    if policy["cards.info_repeat_hours"] == 0:
        _say(logging.INFO, "dev profile: info cards repeat on every call (cards.info_repeat_hours = 0); "
                           "production shows an info card once per 24 h per user, patient and encounter"
             if args.dev and cfg.policy == str(DEV_POLICY) else
             "info cards repeat on every call (cards.info_repeat_hours = 0 in the policy file)")
    elif args.dev:
        _say(logging.WARNING, "dev profile not applied: CDS_POLICY names a policy file, whose "
                              "cards.info_repeat_hours is used", info_repeat_hours=policy["cards.info_repeat_hours"])
    if cfg.auth == "off":
        _say(logging.WARNING, "CDS_AUTH=off - JWT authentication is disabled. Never expose this to real "
                              "patient data.")
    # The workers read the serving settings from the environment (wsgi.py, asgi.py: serving.Front).
    os.environ.update({
        "CDS_BODY_TIMEOUT": f"{server.body_timeout:g}", "CDS_THREADS": str(server.threads),
        "CDS_ACCESS_LOG": "true" if server.access_log else "false",
    })
    # With several workers, /metrics must add up every worker's counters (prometheus_client
    # multiprocess mode, PROMETHEUS_MULTIPROC_DIR; see metrics.py). Set before granian forks.
    from ..runtime import metrics
    metrics.prepare_multiprocess(server.workers)
    os.environ["CDS_SERVE_PID"] = str(os.getpid())  # the workers watch it (serving.watch_parent)
    os.execv(sys.executable, granian_argv(server))
    return 0  # pragma: no cover


def _say(level: int, msg: str, **fields) -> None:
    """One JSON log line on stderr, in the workers' format (logging_setup.JsonFormatter), before
    logging is configured: every line the service writes is JSON, the first one too."""
    from ..logging_setup import JsonFormatter
    record = logging.LogRecord("cds_service.cli", level, __file__, 0, msg, None, None)
    record.fields = fields
    print(JsonFormatter().format(record), file=sys.stderr, flush=True)


def _port_in_use(host: str, port: int) -> str | None:
    """A sentence when host:port cannot be bound (another server has it), else None. A test
    bind with SO_REUSEADDR, as granian binds: a port in TIME_WAIT is not "in use"."""
    import socket
    if port == 0:
        return None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        why = exc.strerror or str(exc)
        return f"cannot listen on {host}:{port}: {why.lower()} (is another server running there? use --port)"
    return None


def granian_argv(server) -> list[str]:
    """The granian command line for `server` (a config.ServerConfig); see README "Serving".

    - ASGI on HTTP/1.1 only (what EHRs and reverse proxies speak; no h2c, no websockets).
    - Headers must arrive within header_timeout, enforced in Rust before any Python runs:
      a slowloris socket costs a file descriptor, never a thread.
    - Each worker runs the Flask app on a pool of `threads` Python threads (serving.Front);
      bodies are read, and /healthz answered, in the event loop, never on a thread.
    - SIGTERM: granian stops accepting, lets in-flight calls finish, and kills workers still
      busy after shutdown_timeout. A worker that dies is started again.
    - granian's own access log is off: the app writes JSON lines (web/serving.py).
    """
    # glibc gives each thread (the FHIR pool has 32) its own malloc arena, and freed memory
    # stays fragmented there: RSS crept from 150 to 190 MB over 10,000 soak requests; with
    # two arenas it stays flat (bench/RESULTS.md). Read at process start, hence before exec.
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    return [sys.executable, "-m", "granian", "--interface", "asgi", "--http", "1", "--no-ws",
            "--host", server.host, "--port", str(server.port),
            # ASGI (issue 21): granian's event loop reads request bodies and answers /healthz;
            # the app's `threads` run in serving.Front's own pool, not granian's.
            "--workers", str(server.workers),
            # Connections admitted per worker (open, reading headers, or in a call); more
            # wait in the kernel backlog. Each costs a little Rust memory, no thread. Below
            # the number of slow sockets an attacker holds, health checks would queue.
            "--backpressure", "1024", "--backlog", "2048",
            "--runtime-mode", "mt", "--runtime-threads", "2",
            "--http1-header-read-timeout", str(max(1, round(server.header_timeout * 1000))),
            "--workers-kill-timeout", str(server.shutdown_timeout),
            "--respawn-failed-workers", "--no-access-log",
            # granian's own lines (start, workers, errors) as JSON on stderr, like the app's
            "--log-config", str(PACKAGE / "granian_logging.json"),
            "cds_service.asgi:app"]


def _check_server_flags(server) -> None:
    from ..config import ConfigError

    checks = [("--port", server.port, 0 <= server.port <= 65535, "0 to 65535"),
              ("--workers", server.workers, 1 <= server.workers <= 64, "1 to 64"),
              ("--threads", server.threads, 1 <= server.threads <= 512, "1 to 512"),
              ("--header-timeout", server.header_timeout, 0.001 <= server.header_timeout <= 60,
               "seconds, > 0 and <= 60"),
              ("--body-timeout", server.body_timeout, 0 < server.body_timeout <= 600, "seconds, > 0 and <= 600"),
              ("--shutdown-timeout", server.shutdown_timeout, 1 <= server.shutdown_timeout <= 1800,
               "seconds, 1 to 1800")]
    for flag, value, ok, allowed in checks:
        if not ok:
            raise ConfigError(f"{flag}={value!r} is not valid: {allowed}")


def check_schema_version(cfg) -> str | None:
    """One line if the database is at another schema version than this release's, else None.

    PostgreSQL must be at exactly this release's version (`cds-service migrate` on upgrade).
    SQLite applies its pending migrations itself on the first write (zero configuration), so
    only a database from a newer release is refused. A database that cannot be reached at
    start is not refused here: the workers boot, /readyz reports it, and the check runs again
    on the first connection (storage answers 503 until the version is right)."""
    from ..storage import StorageError, open_storage
    store = open_storage(cfg.database, pepper=cfg.audit_pepper, sync=cfg.database_sync, config=cfg)
    try:
        if store.backend == "sqlite" and not os.path.exists(cfg.database):
            return None  # created, at the latest version, on the first write
        current, latest = store.schema_version()
    except StorageError as exc:
        print(f"cds-service: warning: database not reachable at start ({exc}); serving, /readyz reports it",
              file=sys.stderr, flush=True)
        return None
    if current > latest:
        return (f"database {store.path} is at schema version {current}, newer than this release's ({latest}): "
                "upgrade the service")
    if store.backend == "postgres" and current != latest:
        return (f"database {store.path} is at schema version {current}, this release needs {latest}: "
                "run `cds-service migrate` first")
    return None


def _migrate(args: argparse.Namespace) -> int:
    from ..config import ConfigError, load_config
    from ..storage import StorageError, open_storage
    try:
        cfg = load_config({"database": args.database} if args.database else None)
    except ConfigError as exc:
        print(f"cds-service migrate: {exc}", file=sys.stderr)
        return 2
    store = open_storage(cfg.database, pepper=cfg.audit_pepper, sync=cfg.database_sync, config=cfg)
    try:
        before, latest = store.schema_version()
        applied = store.migrate()
        after, _ = store.schema_version()
    except StorageError as exc:
        print(f"cds-service migrate: {exc}", file=sys.stderr)
        return 2
    if applied:
        print(f"{store.path}: schema version {before} -> {after} (applied {', '.join(map(str, applied))})")
    else:
        print(f"{store.path}: schema version {after}, up to date")
    return 0


def _add_migrate(sub) -> None:
    p = sub.add_parser("migrate", help="apply the database's pending schema migrations (run on upgrade)")
    p.add_argument("--database", help="SQLite file or postgresql:// URL (default: CDS_DATABASE)")
    p.set_defaults(func=_migrate)


def _add_serve(sub) -> None:
    p = sub.add_parser(
        "serve", help="run the service under granian (HTTP/1.1, ASGI front around the Flask app)",
        description="Run the service under granian. Every flag falls back to the CDS_* variable "
                    "named in its help, then to the default shown. All CDS_* variables are checked "
                    "before the port is bound (exit code 2 on a bad value).")
    p.add_argument("--host", help="address to bind (CDS_HOST; default 127.0.0.1; 0.0.0.0 in the container)")
    p.add_argument("--port", type=int, help="port to bind (CDS_PORT; default 8000)")
    p.add_argument("--workers", type=int,
                   help="worker processes, each a Python interpreter (CDS_WORKERS; default 2)")
    p.add_argument("--threads", type=int,
                   help="Python threads per worker running the app once a request has arrived "
                        "whole; no thread waits for a client's body (CDS_THREADS; default 64)")
    p.add_argument("--header-timeout", type=float, metavar="SECONDS",
                   help="time a client has to send the request line and headers; the connection "
                        "is closed after it (CDS_HEADER_TIMEOUT; default 10, at most 60)")
    p.add_argument("--body-timeout", type=float, metavar="SECONDS",
                   help="time a client has to send the whole request body after its headers; "
                        "408 after it (CDS_BODY_TIMEOUT; default 15)")
    p.add_argument("--shutdown-timeout", type=int, metavar="SECONDS",
                   help="on SIGTERM, how long in-flight calls may take to finish before workers "
                        "are killed (CDS_SHUTDOWN_TIMEOUT; default 30)")
    p.add_argument("--no-access-log", action="store_true",
                   help="no JSON access-log line per request on stderr (CDS_ACCESS_LOG=false; "
                        "default: logged)")
    p.add_argument("--production", action="store_true",
                   help="same as CDS_ENV=production: refuse to start with CDS_AUTH=off, warn about "
                        "development settings (see README, Security; default: off)")
    p.add_argument("--dev", action="store_true",
                   help="dev profile for testers (python3 dev.py serve sets it): the packaged dev policy, "
                        "info cards repeat on every call (cards.info_repeat_hours = 0) unless CDS_POLICY "
                        "names a policy file; refused with --production (default: off)")
    p.set_defaults(func=_serve)


def _add_assess(sub) -> None:
    from .assess import add_parser
    add_parser(sub)


def _add_feedback_report(sub) -> None:
    p = sub.add_parser("feedback-report", help="accept and override rates per service and card kind")
    p.add_argument("--database", help="SQLite file or postgresql:// URL (default: CDS_DATABASE)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    from .feedback_report import add_site_argument
    add_site_argument(p)  # issue 24: --site

    def run(args):
        from .feedback_report import run as report
        return report(args)

    p.set_defaults(func=run)


def _add_example(sub) -> None:
    p = sub.add_parser("example", help="print an example hook request dated relative to now")
    p.add_argument("name", nargs="?", help="example name (see --list)")
    p.add_argument("--list", action="store_true", help="list the examples")
    p.add_argument("--now", help="ISO date-time to date the example at (default: now)")
    p.add_argument("--write-all", metavar="DIR", help="write every example to DIR (reference copies)")

    def run(args):
        from .examples import run as example
        return example(args)

    p.set_defaults(func=run)


def _add_load_fixtures(sub) -> None:
    p = sub.add_parser("load-fixtures", help="load the synthetic patients into a FHIR R4 server")
    p.add_argument("--fhir-server", required=True, help="FHIR base URL, e.g. http://localhost:8080/fhir")
    p.add_argument("--token", help="bearer token for the FHIR server")
    p.add_argument("--dir", help="directory of transaction Bundle templates (default: the packaged synthetic patients)")
    p.set_defaults(func=lambda args: _lazy("fixtures", args))


def _add_fire(sub) -> None:
    p = sub.add_parser("fire", help="act as a CDS client: call a hook for a patient on a FHIR server")
    p.add_argument("hook", choices=["patient-view", "order-select", "order-sign"])
    p.add_argument("--patient", required=True, help="Patient id on the FHIR server")
    p.add_argument("--fhir-server", required=True, help="FHIR base URL sent as fhirServer")
    p.add_argument("--service-url", default="http://127.0.0.1:8000", help="base URL of the CDS service")
    p.add_argument("--service", help="service id, when several answer the hook")
    p.add_argument("--no-prefetch", action="store_true", help="send no prefetch: the service fetches it all")
    p.add_argument("--draft-order", action="append", metavar="FILE",
                   help="MedicationRequest JSON for order-select/order-sign (repeatable)")
    p.add_argument("--token", help="FHIR access token: sent as fhirAuthorization and used for prefetch")
    p.add_argument("--user", default="Practitioner/cds-fire", help="context.userId")
    p.add_argument("--encounter", help="context.encounterId")
    p.add_argument("--json", action="store_true", help="print the raw response")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="deadline for the prefetch reads, run in parallel, as the service's FHIR "
                        "phase (default: CDS_FHIR_TIMEOUT, else 3); the service's answer gets 10 s more")
    p.set_defaults(func=lambda args: _lazy("fire", args))


def _add_dev_fhir(sub) -> None:
    p = sub.add_parser(
        "dev-fhir", help="local testing only: FHIR server with the synthetic patients and a SMART launcher",
        description="A FHIR server holding the synthetic patients in memory (or proxying --upstream) "
                    "with the SMART launch service the CDS Hooks Sandbox calls, so a card's assessment-view "
                    "link opens. It approves every authorization: loopback only, refused with CDS_ENV=production.")
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8070, help="port (default 8070)")
    p.add_argument("--upstream", metavar="URL",
                   help="proxy this loopback FHIR server (e.g. the test server or HAPI) instead of the "
                        "in-memory patients")
    p.set_defaults(func=lambda args: _lazy("devfhir", args))


def _lazy(module: str, args: argparse.Namespace) -> int:
    from importlib import import_module

    return import_module(f".integration.{module}", __package__).run(args)


# (name, function adding the subparser). Later layers append their commands here.
COMMANDS = [_add_serve, _add_assess, _add_feedback_report, _add_example]
COMMANDS += [_add_migrate]  # issue 16: numbered schema migrations (storage/migrations)
COMMANDS += [_add_load_fixtures, _add_fire]  # integration kit (cli/integration/)
COMMANDS += [_add_dev_fhir]  # issue 22: the Sandbox tester's FHIR server and SMART launcher
from .sites import add_parser as _add_sites  # noqa: E402  issue 24: site profiles
COMMANDS += [_add_sites]


def _add_replay(sub) -> None:  # issue 23: cds_service/replay.py
    from .replay import add_parser
    add_parser(sub)


def _add_check(sub) -> None:  # issue 23: cds_service/check.py
    from .check import add_parser
    add_parser(sub)


COMMANDS += [_add_replay, _add_check]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cds-service", description=__doc__.splitlines()[0])
    from ..version import full_version  # issue 14 part B: package version + git describe
    parser.add_argument("--version", action="version", version=f"cds-service {full_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # inside the try: a closed pipe surfaces here, not at exit
    except BrokenPipeError:
        # Output piped to `head` (or a pager quit early): stop quietly. Point stdout at
        # /dev/null so the interpreter's final flush does not raise again; 141 = 128 +
        # SIGPIPE, what a shell reports for a command the closed pipe stopped.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
