"""GET /docs/rules: the rule behind each card kind, served by the service itself.

Every card's `source.url` is `<public base URL>/docs/rules#<card kind>` (cards/vocabulary.py), so
a clinician who opens a card's source sees, for that kind: the rule (cards/rulebook.py, condensed
from clinical-rules.md v2), the policy keys that decide it with THIS site's current values (the
policy the service runs with), and its citations with their DOI / PubMed / publisher links.

One static HTML page, no script, no patient data; it needs no authentication (like /healthz).
Every text passes html.escape.
"""
from __future__ import annotations

import json
from html import escape

from flask import Blueprint, Response, current_app

from ...hooks import governance
from ...cards import rulebook
from ...cards import vocabulary as vocab

bp = Blueprint("docs", __name__)

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;"
          "line-height:1.45}section{border-top:1px solid #ccc;padding:.5rem 0 1rem}"
          "code{background:#f3f3f3;padding:0 .2rem}table{border-collapse:collapse}"
          "td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left}.meta{color:#555}")


def _value(policy, key: str) -> str:
    values = getattr(policy, "values", {})
    if key not in values:
        return "(not set in this version)"
    return json.dumps(values[key], ensure_ascii=False)


def _governance(policy, today) -> list[str]:
    """§19.14: the clinical owner and review date, and a warning once the date has passed."""
    values = getattr(policy, "values", {})
    if "governance.owner" not in values:
        return []
    owner, due = values.get("governance.owner"), values.get("governance.review_by")
    out = [f"<p class='meta'>Clinical owner: {escape(owner or 'not named')} · next review: "
           f"{escape(due or 'not set')}</p>"]
    warning = governance.review_warning(policy, today)
    if warning:
        out.append(f"<p role='alert' style='border:2px solid #b00;padding:.5rem'><strong>Warning:</strong> "
                   f"{escape(warning)}.</p>")
    return out


def render(policy, today=None) -> str:
    """The whole page for `policy` (a logic.policy.Policy); `today` (a date) for the review warning."""
    from datetime import datetime, timezone
    today = today or datetime.now(timezone.utc).date()
    source = escape(str(getattr(policy, "source", "defaults")))
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
             "<title>COVID-19 coagulopathy CDS: card rules</title>",
             f"<style>{_STYLE}</style></head><body>",
             "<h1>COVID-19 coagulopathy CDS: the rule behind each card</h1>",
             "<p>Decision support for hospitalised adults with COVID-19; it never prescribes. Section numbers "
             "refer to the service's clinical rules (version 2). Policy values are those this service runs with "
             f"(policy: <code>{source}</code>).</p>", *_governance(policy, today),
             # issue 23: the HTI-1 source attributes and the FDA criterion-4 basis, generated
             "<p>Source attributes (ONC HTI-1) and the basis of the recommendations: "
             "<a href='/docs/source-attributes'>/docs/source-attributes</a>.</p><ul>"]
    parts += [f"<li><a href='#{escape(r.kind)}'>{escape(vocab.CARD_KINDS[r.kind])}</a> "
              f"(<code>{escape(r.kind)}</code>)</li>" for r in rulebook.RULES]
    parts.append("</ul>")
    for r in rulebook.RULES:
        parts.append(f"<section id='{escape(r.kind)}'><h2>{escape(vocab.CARD_KINDS[r.kind])}</h2>")
        parts.append(f"<p class='meta'>Card kind <code>{escape(r.kind)}</code> · rules {escape(r.sections)} · "
                     f"{escape(r.hooks)}</p>")
        rule = (r.rule,) if isinstance(r.rule, str) else r.rule   # never one character per line (§19.13)
        parts += [f"<p>{escape(p)}</p>" for p in rule]
        if r.policy_keys:
            parts.append("<h3>Policy keys</h3><table><tr><th>Key</th><th>Value here</th></tr>")
            parts += [f"<tr><td><code>{escape(k)}</code></td><td><code>{escape(_value(policy, k))}</code></td></tr>"
                      for k in r.policy_keys]
            parts.append("</table>")
        parts.append("<h3>Evidence</h3><ul>")
        for key in r.evidence:
            label, url, citation = *vocab.EVIDENCE[key], vocab.CITATIONS[key]
            parts.append(f"<li>{escape(citation)}: <a href='{escape(url)}' rel='noopener'>{escape(label)}</a></li>")
        parts.append("</ul></section>")
    parts.append("</body></html>")
    return "".join(parts)


@bp.get(vocab.DOCS_PATH)
def rules_page() -> Response:
    state = current_app.extensions["cds"]
    resp = Response(render(state.policy), mimetype="text/html")
    resp.headers["Cache-Control"] = "public, max-age=300"
    resp.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return resp
