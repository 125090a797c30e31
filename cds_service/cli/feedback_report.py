"""`cds-service feedback-report`: accept and override rates per service and per card kind.

Each issued card counts once, with the outcome of its latest feedback (by outcomeTimestamp;
a card accepted and later overridden counts as overridden). Rates are over cards issued:
clients send no feedback for ignored cards, so `no_feedback` covers ignored and superseded
cards (order-select fires again on every edit). `response_accept_rate` is accepted over
cards that got any feedback. Feedback naming a card this service never issued is counted
apart as `unmatched_feedback`.

Card lifecycle (clinical-rules §18.3): `shown` is the cards issued (`cards`); `suppressed`
counts patient-view cards the service built but withheld (an info card repeated within
`cards.info_repeat_hours`, or a card snoozed after an override), with `suppressed_reasons`.
Suppressed cards are not in the rates: nobody saw them.

Alert rates (clinical-rules §19.14, `alert_rates`): per card kind and indicator, the cards
shown, silent (computed and audited, never sent: `cards.silent`, `cards.silent_kinds`),
suppressed (card lifecycle), disabled (`cards.disabled_kinds`), accepted and overridden, each
also per 100 patient-days, with the override reasons. A patient-day is one distinct patient +
encounter + UTC day seen by any hook call (the audit row's patient hash, its encounter
pseudonym, and the day of `evaluated_at`); a call whose encounter is not recorded counts as the
patient's "no encounter" bucket that day.
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from typing import Any
from urllib.parse import quote

from ..storage import synthetic

_LATEST = """
WITH ranked AS (
    SELECT card_uuid, service_id, outcome, override_code, override_system,
           ROW_NUMBER() OVER (PARTITION BY card_uuid, service_id
                              ORDER BY outcome_timestamp DESC, id DESC) AS rn
    FROM feedback
)
SELECT h.service_id, c.kind, r.outcome, r.override_code, r.override_system
FROM card c
JOIN hook_call h ON h.id = c.call_id
LEFT JOIN ranked r ON r.card_uuid = c.uuid AND r.service_id = h.service_id AND r.rn = 1
"""

_UNMATCHED = """
SELECT COUNT(*) FROM feedback f
WHERE NOT EXISTS (SELECT 1 FROM card c JOIN hook_call h ON h.id = c.call_id
                  WHERE c.uuid = f.card_uuid AND h.service_id = f.service_id)
"""


_SUPPRESSED = """
SELECT service_id, kind, reason FROM card_lifecycle WHERE status = 'suppressed'
"""


_ALERT_LATEST = """
WITH ranked AS (
    SELECT card_uuid, service_id, outcome, override_code,
           ROW_NUMBER() OVER (PARTITION BY card_uuid, service_id
                              ORDER BY outcome_timestamp DESC, id DESC) AS rn
    FROM feedback
)
SELECT c.kind, c.indicator, r.outcome, r.override_code
FROM card c
JOIN hook_call h ON h.id = c.call_id
LEFT JOIN ranked r ON r.card_uuid = c.uuid AND r.service_id = h.service_id AND r.rn = 1
"""
_ALERT_SUPPRESSED = "SELECT kind, indicator FROM card_lifecycle WHERE status = 'suppressed'"
_CALLS = "SELECT patient_hash, evaluated_at, assessment FROM hook_call"


def _json(value) -> dict:
    if isinstance(value, dict):
        return value
    if isinstance(value, (str, bytes)):
        try:
            out = json.loads(value)
        except ValueError:
            return {}
        return out if isinstance(out, dict) else {}
    return {}


def _tally_outcome(g: dict[str, Any], outcome: str | None, reason: str | None) -> bool:
    """Count an accepted/overridden outcome in group `g` and an override's reason; True if overridden."""
    if outcome in ("accepted", "overridden"):
        g[outcome] += 1
    if outcome != "overridden":
        return False
    code = reason or NO_REASON
    g["override_reasons"][code] = g["override_reasons"].get(code, 0) + 1
    return True


def alert_rates(conn) -> dict[str, Any]:
    """§19.14 alert rates per card kind and indicator (see the module docstring)."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}

    def group(kind: str, indicator: str) -> dict[str, Any]:
        return groups.setdefault((kind, indicator), {
            "shown": 0, "silent": 0, "suppressed": 0, "disabled": 0, "accepted": 0, "overridden": 0,
            "override_reasons": {}})

    for kind, indicator, outcome, reason in conn.execute(_ALERT_LATEST):
        g = group(kind, indicator)
        g["shown"] += 1
        _tally_outcome(g, outcome, reason)
    if _has_table(conn, "card_lifecycle"):
        for kind, indicator in conn.execute(_ALERT_SUPPRESSED):
            group(kind, indicator)["suppressed"] += 1
    days: set[tuple[str, str, str]] = set()
    for patient_hash, evaluated_at, assessment in conn.execute(_CALLS):
        audit = _json(assessment)
        governance = audit.get("governance") if isinstance(audit.get("governance"), dict) else {}
        day = str(evaluated_at)[:10]
        days.add((patient_hash, str(governance.get("encounter") or ""), day))
        for status in ("silent", "disabled"):
            for entry in governance.get(status) or ():
                if isinstance(entry, dict) and isinstance(entry.get("kind"), str):
                    group(entry["kind"], str(entry.get("indicator") or "info"))[status] += 1
    patient_days = len(days)
    rows = []
    for (kind, indicator), g in sorted(groups.items()):
        per = {k: (round(100 * g[k] / patient_days, 2) if patient_days else None)
               for k in ("shown", "silent", "suppressed", "disabled", "accepted", "overridden")}
        rows.append({"kind": kind, "indicator": indicator, **{k: v for k, v in g.items() if k != "override_reasons"},
                     "per_100_patient_days": per,
                     "override_reasons": dict(sorted(g["override_reasons"].items(), key=lambda kv: (-kv[1], kv[0])))})
    return {"patient_days": patient_days, "by_kind_and_indicator": rows}


def _has_table(conn, name: str) -> bool:
    if isinstance(conn, sqlite3.Connection):
        return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                            (name,)).fetchone() is not None
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def report_connection(target: str):
    """A read-only connection for the report: a SQLite file (opened mode=ro) or a
    postgresql:// URL (issue 16; a read-only transaction). Both answer `execute(sql)`."""
    from ..storage import is_postgres
    if is_postgres(target):
        import psycopg
        conn = psycopg.connect(target, autocommit=True, connect_timeout=10,
                               options="-c default_transaction_read_only=on")
        return conn
    return sqlite3.connect(f"file:{quote(os.path.abspath(target))}?mode=ro", uri=True)


def _new_group() -> dict[str, Any]:
    return {"cards": 0, "accepted": 0, "overridden": 0, "override_reasons": {}, "suppressed": 0,
            "suppressed_reasons": {}, "override_categories": {}}


def _rates(counts: dict[str, Any]) -> dict[str, Any]:
    issued, acc, ovr = counts["cards"], counts["accepted"], counts["overridden"]
    counts["no_feedback"] = issued - acc - ovr
    counts["accept_rate"] = round(acc / issued, 4) if issued else None
    counts["override_rate"] = round(ovr / issued, 4) if issued else None
    counts["response_accept_rate"] = round(acc / (acc + ovr), 4) if acc + ovr else None
    counts["override_reasons"] = dict(sorted(counts["override_reasons"].items(), key=lambda kv: (-kv[1], kv[0])))
    counts["shown"] = issued
    counts["suppressed_reasons"] = dict(sorted(counts["suppressed_reasons"].items()))
    counts["override_categories"] = dict(sorted(counts["override_categories"].items(),
                                                key=lambda kv: (-kv[1], kv[0])))
    return counts


def build_report(conn) -> dict[str, Any]:
    """conn: a sqlite3 or psycopg connection (report_connection)."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    categories, category_totals = _category_map(), {}
    for service, kind, outcome, reason_code, reason_system in conn.execute(_LATEST):
        reason = _reason_label(reason_system, reason_code)
        if outcome == "overridden":
            _tally_category(category_totals, categories, reason_system, reason_code, reason or NO_REASON)
        keys = [("service", service), ("kind", kind), ("service_kind", f"{service}\t{kind}")]
        for key in keys:
            g = groups.setdefault(key, _new_group())
            g["cards"] += 1
            if _tally_outcome(g, outcome, reason):
                _count_category(g, categories, reason_system, reason_code)
    suppressed_total, suppressed_by_reason = 0, {}
    if _has_table(conn, "card_lifecycle"):  # databases from before the card lifecycle have none
        for service, kind, reason in conn.execute(_SUPPRESSED):
            suppressed_total += 1
            suppressed_by_reason[reason] = suppressed_by_reason.get(reason, 0) + 1
            for key in [("service", service), ("kind", kind), ("service_kind", f"{service}\t{kind}")]:
                g = groups.setdefault(key, _new_group())
                g["suppressed"] += 1
                g["suppressed_reasons"][reason] = g["suppressed_reasons"].get(reason, 0) + 1

    def section(name: str) -> list[dict[str, Any]]:
        rows = []
        for (level, value), counts in sorted(groups.items()):
            if level != name:
                continue
            ident = dict(zip(("service", "kind"), value.split("\t"))) if name == "service_kind" \
                else {name: value}
            rows.append({**ident, **_rates(dict(counts))})
        return rows

    totals = {
        "hook_calls": conn.execute("SELECT COUNT(*) FROM hook_call").fetchone()[0],
        "cards": conn.execute("SELECT COUNT(*) FROM card").fetchone()[0],
        "feedback_items": conn.execute("SELECT COUNT(*) FROM feedback").fetchone()[0],
        "unmatched_feedback": conn.execute(_UNMATCHED).fetchone()[0],
    }
    return {"totals": totals, "by_service": section("service"), "by_kind": section("kind"),
            "by_service_and_kind": section("service_kind"),
            "override_categories": _category_totals(category_totals),
            "lifecycle": {"suppressed": suppressed_total,
                          "suppressed_reasons": dict(sorted(suppressed_by_reason.items()))},
            "alert_rates": alert_rates(conn)}


# -- CDS Hooks 3.0 non-adherence categories (issue 23) -------------------------------------------
# Our override reasons map to the 3.0 categories through the override-reason CodeSystem's
# property (terminology.py). A reason written under any of our system URIs, including the
# pre-issue-23 https://cds.example.org/CodeSystem/override-reason, is the same reason; a coding
# sent directly in the 3.0 system counts under its own category; any other system is
# "(unmapped)".
UNMAPPED = "(unmapped)"
NO_REASON = "(no reason given)"


def _category_map() -> dict[str, str]:
    from ..cards.terminology import reason_categories
    return reason_categories()


def _reason_label(system: str | None, code: str | None) -> str | None:
    """The reason as reported: our code, or "code (system)" for a coding from elsewhere."""
    from ..cards.vocabulary import OVERRIDE_REASON
    from ..cards.terminology import our_code
    if not code:
        return None
    ours = our_code(OVERRIDE_REASON, system, code)
    return ours if ours is not None else f"{code} ({system})"


def _category_of(categories: dict[str, str], system: str | None, code: str | None) -> str:
    from ..cards.vocabulary import OVERRIDE_REASON
    from ..cards.terminology import NON_ADHERENCE_SYSTEM, our_code
    if not code:
        return NO_REASON
    if system == NON_ADHERENCE_SYSTEM:
        return code
    ours = our_code(OVERRIDE_REASON, system, code)
    return categories.get(ours, UNMAPPED) if ours is not None else UNMAPPED


def _count_category(group: dict[str, Any], categories: dict[str, str], system, code) -> None:
    category = _category_of(categories, system, code)
    group["override_categories"][category] = group["override_categories"].get(category, 0) + 1


def _tally_category(totals: dict[str, dict[str, Any]], categories: dict[str, str], system, code,
                    reason: str) -> None:
    """One overridden card into the report-wide table: its 3.0 category and, under it, our reason."""
    from ..cards.terminology import NON_ADHERENCE_CATEGORIES, NON_ADHERENCE_SYSTEM
    category = _category_of(categories, system, code)
    row = totals.setdefault(category, {
        "category": category,
        "system": NON_ADHERENCE_SYSTEM if category in NON_ADHERENCE_CATEGORIES else None,
        "display": NON_ADHERENCE_CATEGORIES.get(category), "overridden": 0, "reasons": {}})
    row["overridden"] += 1
    row["reasons"][reason] = row["reasons"].get(reason, 0) + 1


def _category_totals(totals: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = sorted(totals.values(), key=lambda r: (-r["overridden"], r["category"]))
    for r in rows:
        r["reasons"] = dict(sorted(r["reasons"].items(), key=lambda kv: (-kv[1], kv[0])))
    return rows


def _category_lines(report: dict[str, Any]) -> list[str]:
    rows = report.get("override_categories") or []
    if not rows:
        return []
    lines = ["Overrides by CDS Hooks 3.0 non-adherence category (category: count; our reasons)"]
    for r in rows:
        reasons = ", ".join(f"{code} x {n}" for code, n in r["reasons"].items())
        lines.append(f"  {r['category']}: {r['overridden']}" + (f" ({reasons})" if reasons else ""))
    return lines


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def format_report(report: dict[str, Any], path: str) -> str:
    t = report["totals"]
    lines = [f"Feedback report for {path}",
             f"hook calls {t['hook_calls']}, cards {t['cards']}, feedback items {t['feedback_items']}, "
             f"unmatched feedback {t['unmatched_feedback']}", ""]
    life = report.get("lifecycle") or {}
    if life.get("suppressed"):
        lines[1] += f", suppressed cards {life['suppressed']} (" + ", ".join(
            f"{reason} {n}" for reason, n in life["suppressed_reasons"].items()) + ")"
    head = (f"{'shown':>6} {'suppressed':>11} {'accepted':>9} {'overridden':>11} {'no feedback':>12} "
            f"{'accept':>8} {'override':>9}")

    def row(label: str, width: int, r: dict[str, Any]) -> str:
        return (f"{label:<{width}} {r['cards']:>6} {r['suppressed']:>11} {r['accepted']:>9} {r['overridden']:>11} "
                f"{r['no_feedback']:>12} {_pct(r['accept_rate']):>8} {_pct(r['override_rate']):>9}")

    for title, rows, label in (
        ("By service", report["by_service"], lambda r: r["service"]),
        ("By card kind", report["by_kind"], lambda r: r["kind"]),
        ("By service and card kind", report["by_service_and_kind"], lambda r: f"{r['service']} / {r['kind']}"),
    ):
        width = max([len(title)] + [len(label(r)) for r in rows])
        lines += [f"{title:<{width}} {head}"]
        lines += [row(label(r), width, r) for r in rows] or ["(no cards issued)"]
        lines.append("")
    reasons = [(r["kind"], code, n) for r in report["by_kind"] for code, n in r["override_reasons"].items()]
    if reasons:
        lines.append("Override reasons (card kind: reason code x count)")
        lines += [f"  {kind}: {code} x {n}" for kind, code, n in reasons]
    lines += _category_lines(report)
    withheld = [(r["kind"], reason, n) for r in report["by_kind"] for reason, n in r["suppressed_reasons"].items()]
    if withheld:
        lines.append("Suppressed cards (card kind: why x count)")
        lines += [f"  {kind}: {reason} x {n}" for kind, reason, n in withheld]
    lines += _format_alert_rates(report.get("alert_rates"))
    return "\n".join(lines).rstrip() + "\n"


def _format_alert_rates(rates: dict[str, Any] | None) -> list[str]:
    """§19.14: counts, then (per 100 patient-days), per card kind and indicator."""
    if not rates:
        return []
    cols = ("shown", "silent", "suppressed", "disabled", "accepted", "overridden")
    lines = ["", f"Alert rates per 100 patient-days (patient-days: {rates['patient_days']}; count (rate))"]
    rows = rates["by_kind_and_indicator"]
    width = max([len("Card kind / indicator")] + [len(f"{r['kind']} / {r['indicator']}") for r in rows])
    lines.append(f"{'Card kind / indicator':<{width}} " + " ".join(f"{c:>18}" for c in cols))
    for r in rows:
        cells = []
        for c in cols:
            per = r["per_100_patient_days"][c]
            cells.append(f"{r[c]} ({'-' if per is None else f'{per:.2f}'})".rjust(18))
        lines.append(f"{r['kind'] + ' / ' + r['indicator']:<{width}} " + " ".join(cells))
        if r["override_reasons"]:
            lines.append("  override reasons: " + ", ".join(f"{k} x {n}" for k, n in r["override_reasons"].items()))
    if not rows:
        lines.append("(no cards)")
    return lines


def run(args: argparse.Namespace) -> int:
    from ..config import ConfigError, load_config

    path = args.database
    if not path:
        try:
            path = load_config().database
        except ConfigError as exc:
            print(f"cds-service feedback-report: {exc}", file=sys.stderr)
            return 2
    from ..storage import is_postgres
    shown = path
    if is_postgres(path):
        from ..storage.postgres import redacted_url
        shown = redacted_url(path)
    elif not os.path.isfile(path):
        print(f"cds-service feedback-report: no database at {path!r}", file=sys.stderr)
        return 2
    try:
        conn = report_connection(path)
        try:
            restrict_to_site(conn, getattr(args, "site", None),  # issue 24; review #13
                             include_synthetic=bool(getattr(args, "include_synthetic", False)))
            report = build_report(conn)
        finally:
            conn.close()
    except Exception as exc:  # sqlite3.Error, psycopg.Error
        if not isinstance(exc, sqlite3.Error) and type(exc).__module__.split(".")[0] != "psycopg":
            raise
        print(f"cds-service feedback-report: cannot read {shown!r}: {exc}", file=sys.stderr)
        return 2
    path = shown
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        sys.stdout.write(format_report(report, path))
    return 0


# --- issue 24: `feedback-report --site` (site profiles), kept apart from the report itself ----
# The report's queries stay as they are: for one site, temporary views of the same names
# (searched before the real tables, in SQLite and PostgreSQL) show only that site's rows.
# Feedback joins its site through the card it answers; feedback naming no known card
# (unmatched) belongs to no site and is left out.
# Review #19: a lifecycle row belongs to a site through its card when the card was shown (its
# uuid is in `card`); a withheld card's row through its hookInstance, which the EHR chooses, so a
# hookInstance that several sites' calls used is attributed to none of them (never to the
# wrong one). Review #13: calls marked as synthetic (check/replay) are left out, with their
# cards, lifecycle rows and feedback, unless --include-synthetic.
_NOT_SYNTHETIC = "COALESCE(h.assessment, '') NOT LIKE '%\"" + synthetic.AUDIT_KEY + "\"%'"
_VIEWS = {
    "hook_call": "SELECT h.* FROM {m}hook_call h WHERE {where}",
    "card": "SELECT c.* FROM {m}card c JOIN {m}hook_call h ON h.id = c.call_id WHERE {where}",
    "card_lifecycle": "SELECT l.* FROM {m}card_lifecycle l WHERE l.card_uuid IN (SELECT c.uuid FROM {m}card c "
                      "JOIN {m}hook_call h ON h.id = c.call_id WHERE {where}) OR (l.card_uuid NOT IN "
                      "(SELECT c.uuid FROM {m}card c) AND l.hook_instance IN (SELECT h.hook_instance FROM "
                      "{m}hook_call h WHERE {where}) AND l.hook_instance NOT IN (SELECT h.hook_instance FROM "
                      "{m}hook_call h WHERE NOT ({where})))",
}
# Feedback: for one site, only feedback on its cards; for all sites, everything but feedback on
# synthetic calls' cards (unmatched feedback stays, as before).
_FEEDBACK_SITE = ("SELECT f.* FROM {m}feedback f WHERE f.card_uuid IN (SELECT c.uuid FROM card c) "
                  "OR f.card_uuid IN (SELECT l.card_uuid FROM card_lifecycle l)")
_FEEDBACK_ALL = ("SELECT f.* FROM {m}feedback f WHERE f.card_uuid NOT IN (SELECT c.uuid FROM {m}card c "
                 "JOIN {m}hook_call h ON h.id = c.call_id WHERE NOT ({where}))")


def site_id_argument(value: str) -> str:
    from ..sites.model import SITE_ID
    if not SITE_ID.fullmatch(value):
        raise argparse.ArgumentTypeError(f"a site id matches {SITE_ID.pattern}")
    return value


def add_site_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--site", type=site_id_argument,
                        help="only this site's calls, cards and feedback (CDS_SITES; 'default' without it)")
    parser.add_argument("--include-synthetic", action="store_true",
                        help="also count the calls `cds-service check` and `replay` sent (left out by default)")


def restrict_to_site(conn, site: str | None, include_synthetic: bool = False) -> None:
    """Make `conn` show only `site`'s rows (all sites' if None), without synthetic traffic
    unless `include_synthetic`, to the report's queries (temporary views)."""
    if not site and include_synthetic:
        return
    literal = "'" + (site or "").replace("'", "''") + "'"  # site_id_argument allows no quote anyway
    where = " AND ".join(([f"h.site_id = {literal}"] if site else []) + ([] if include_synthetic else [_NOT_SYNTHETIC]))
    sqlite = isinstance(conn, sqlite3.Connection)
    prefix = "main." if sqlite else "public."
    if not sqlite:  # temporary views only: this session's pg_temp, no table is written
        conn.execute("SET default_transaction_read_only = off")
    has_lifecycle = _has_table(conn, "card_lifecycle")
    for name, select in _VIEWS.items():
        if name == "card_lifecycle" and not has_lifecycle:
            continue
        conn.execute(f"CREATE TEMP VIEW {name} AS " + select.format(m=prefix, where=where))
    feedback = _FEEDBACK_SITE if site else _FEEDBACK_ALL
    if site and not has_lifecycle:
        feedback = feedback.split(" OR f.card_uuid IN (SELECT l.card_uuid")[0]
    conn.execute("CREATE TEMP VIEW feedback AS " + feedback.format(m=prefix, where=where))
    if not sqlite:
        conn.execute("SET default_transaction_read_only = on")
