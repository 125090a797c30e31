"""GET /docs/source-attributes (HTML) and /docs/source-attributes.json: the ONC HTI-1 source
attributes and the FDA criterion-4 basis of this service version, built by
cds_service/source_attributes.py from the code and the policy the service runs with.
No patient data, no authentication (like /docs/rules). Every text passes html.escape."""
from __future__ import annotations

import json
from html import escape
from typing import Any

from flask import Blueprint, Response, current_app

from .attributes import build

bp = Blueprint("source_attributes", __name__)
PATH = "/docs/source-attributes"

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;"
          "line-height:1.45}section{border-top:1px solid #ccc;padding:.5rem 0 1rem}"
          "code{background:#f3f3f3;padding:0 .2rem}table{border-collapse:collapse}"
          "td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}.meta{color:#555}")


def _document() -> dict[str, Any]:
    from ...cards.build import public_base_url
    state = current_app.extensions["cds"]
    return build(state.policy, base_url=public_base_url())


def _v(value: Any) -> str:
    return escape(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))


def render(doc: dict[str, Any]) -> str:
    p = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
         "<title>COVID-19 coagulopathy CDS: source attributes</title>",
         f"<style>{_STYLE}</style></head><body>",
         "<h1>Source attributes and basis of the recommendations</h1>",
         f"<p class='meta'>Service version <code>{_v(doc['service_version'])}</code> · policy "
         f"<code>{_v(doc['policy_source'])}</code> · {_v(doc['intervention_type'])} · "
         "<a href='/docs/source-attributes.json'>JSON</a> · <a href='/docs/rules'>rules by card kind</a></p>",
         "<section><h2>ONC HTI-1 source attributes (45 CFR 170.315(b)(11)(iv)(A))</h2>",
         "<table><tr><th>§</th><th>Attribute</th><th>This service</th></tr>"]
    for a in doc["hti1_source_attributes"]:
        number = a["paragraph"].rsplit("(", 1)[1].rstrip(")")
        if a["key"] == "bibliographic_citation":
            cell = "<ul>" + "".join(
                f"<li>{_v(c['citation'])}" + (f" (<a href='{_v(c['url'])}' rel='noopener'>link</a>)" if c["url"] else "")
                + (f" · cards: {_v(', '.join(c['card_kinds']))}" if c["card_kinds"] else "") + "</li>"
                for c in a["value"]) + "</ul>"
        elif a["key"] == "release_and_revision_dates":
            v = a["value"]
            cell = (f"Version <code>{_v(v['service_version'])}</code>; revision date {_v(v['revision_date'] or 'not known (installed package)')}. "
                    "Reference sources: " + "; ".join(f"{_v(r['citation'])}" for r in v["reference_sources"]))
        elif "uses" in a:
            cell = ("<strong>Yes.</strong> " if a["uses"] else "<strong>No.</strong> ") + _v(a["how"])
        else:
            cell = _v(a["value"]) + f" <span class='meta'>({_v(a['from'])})</span>"
        p.append(f"<tr id='{_v(a['key'])}'><td>({number})</td><td>{_v(a['attribute'])}</td><td>{cell}</td></tr>")
    p.append("</table></section>")
    f = doc["fda_criterion_4_basis"]
    p.append("<section><h2>Basis of the recommendations (FDA CDS criterion 4)</h2>")
    p.append(f"<h3>Intended use</h3><p>{_v(f['intended_use'])}</p>")
    p.append(f"<h3>Intended users</h3><p>{_v(f['intended_users'])}</p>")
    p.append(f"<h3>Patient population</h3><p>{_v(f['patient_population'])}</p>")
    p.append("<h3>Out-of-scope use</h3><ul>")
    p += [f"<li>{_v(o['who'])}: {'no cards' if o['enforced'] else 'NOT enforced at this site'} "
          f"(<code>{_v(o['policy'])}</code>)</li>" for o in f["out_of_scope_use"]]
    p.append("</ul><h3>Inputs and their windows</h3><table><tr><th>Input</th><th>What</th><th>Window (policy)</th>"
             "<th>Read by</th></tr>")
    p += [f"<tr><td><code>{_v(i['input'])}</code></td><td>{_v(i['what'])}</td>"
          f"<td>{_v(i['windows']) if i['windows'] else 'current record'}</td><td>{_v(', '.join(i['read_by']))}</td></tr>"
          for i in f["inputs"]]
    p.append("</table><h3>Logic, by pathway and card kind</h3>")
    for hook, rules in f["logic"]["by_pathway"].items():
        p.append(f"<h4>{_v(hook)}</h4><ul>")
        p += [f"<li><a href='{_v(r['source'])}'>{_v(r['display'])}</a> (<code>{_v(r['kind'])}</code>, "
              f"{_v(r['sections'])}): {_v(' '.join(r['rule']))}</li>" for r in rules]
        p.append("</ul>")
    v = f["validation"]
    p.append("<h3>Validation</h3><ul>")
    t = v["tests"]
    if t:
        p.append(f"<li>{t['test_functions']} test functions; {t['band_edge_tests']} of them test a band edge or "
                 f"threshold. By directory: {_v(t['by_directory'])}</li>")
    else:
        p.append("<li>The test tree is not installed with this package; see the source repository.</li>")
    r = v["reference_patients"]
    p.append(f"<li>{r['patients']} synthetic reference patients and {r['draft_order_sets']} draft order sets, "
             f"{r['expected_card_rows']} expected answers worked out by hand from the rules "
             f"(<code>{_v(r['documented_in'])}</code>)</li></ul>")
    k = f["known_limitations"]
    p.append("<h3>Known limitations</h3><ul>")
    p.append(f"<li>{k['unverified_codes']['count']} codes not yet confirmed against their terminology: "
             f"<code>{_v(', '.join(k['unverified_codes']['codes']))}</code></li>")
    p += [f"<li>Rule marked unverified: <code>{_v(u['policy_prefix'])}</code>: {_v(u['source'])}</li>"
          for u in k["rules_marked_unverified"]]
    if k["citations_not_verified"]:
        p.append(f"<li>Citation identifiers not yet checked: {_v(', '.join(k['citations_not_verified']))}</li>")
    p += [f"<li>{_v(lp['note'])} (<code>{_v(lp['key'])}</code> = {_v(lp['value'])})</li>" for lp in k["local_policy"]]
    p.append("</ul></section></body></html>")
    return "".join(p)


@bp.get(PATH)
def page() -> Response:
    resp = Response(render(_document()), mimetype="text/html")
    resp.headers["Cache-Control"] = "public, max-age=300"
    resp.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return resp


@bp.get(PATH + ".json")
def document() -> Response:
    import orjson
    resp = Response(orjson.dumps(_document()), mimetype="application/json")
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp
