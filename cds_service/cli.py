"""`cds-service` command line: serve, assess, and the integration tools.

Subcommands are registered in one table (COMMANDS) so each lives next to its code.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _serve(args: argparse.Namespace) -> int:
    from .config import ConfigError, load_config
    from .security import check_startup

    if args.production:
        os.environ["CDS_ENV"] = "production"  # gunicorn's workers re-check it (wsgi.py)
    try:
        cfg = load_config()
        check_startup(cfg)  # production without auth, a broken trust file: stop here, clearly
    except ConfigError as exc:
        print(f"cds-service: {exc}", file=sys.stderr)
        return 2
    base = f"http://{args.host}:{args.port}"
    example = EXAMPLES / "patient-view-sic-positive.json"
    print(f"CDS Hooks discovery: {base}/cds-services", flush=True)
    print("Try a hook call (returns cards):", flush=True)
    print(f"  curl -s -X POST {base}/cds-services/coagulopathy-risk "
          f"-H 'Content-Type: application/json' -d @{example}", flush=True)
    if cfg.auth == "off":
        print("WARNING: CDS_AUTH=off - JWT authentication is disabled. Never expose this to real "
              "patient data.", file=sys.stderr, flush=True)
    argv = [sys.executable, "-m", "gunicorn", "--bind", f"{args.host}:{args.port}",
            "--workers", str(args.workers), "--threads", str(args.threads),
            "--access-logfile", "-", "--access-logformat", '%(h)s "%(r)s" %(s)s %(b)s %(M)sms',
            "cds_service.wsgi:app"]
    os.execv(sys.executable, argv)
    return 0  # pragma: no cover


def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="run the service under gunicorn")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--production", action="store_true",
                   help="refuse to start with CDS_AUTH=off (see README, Security)")
    p.set_defaults(func=_serve)


def _add_assess(sub) -> None:
    from .assess_cli import add_parser
    add_parser(sub)


# (name, function adding the subparser). Later layers append their commands here.
COMMANDS = [_add_serve, _add_assess]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cds-service", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
