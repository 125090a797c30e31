"""The rule page every card's source links to (GET /docs/rules, cds_service/docs_page)."""
from __future__ import annotations

import re
from pathlib import Path

from cds_service import create_app
from cds_service.cards import rulebook
from cds_service.cards import vocabulary as vocab
from hook_helpers import kind, only_card, run


def test_rule_page_has_every_card_kind_with_its_keys_and_citations(client):
    resp = client.get("/docs/rules")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    page = resp.get_data(as_text=True)
    for rule in rulebook.RULES:
        assert f"<section id='{rule.kind}'>" in page
        for key in rule.policy_keys:
            assert f"<code>{key}</code>" in page
        for key in rule.evidence:
            assert vocab.EVIDENCE[key][1].replace("&", "&amp;") in page
    assert set(rulebook.BY_KIND) == set(vocab.CARD_KINDS), "every card kind has a rule entry"
    assert "example.org" not in page and "example.com" not in page


def test_every_policy_key_the_rule_page_names_exists():
    from cds_service.logic.policy import Policy
    values = Policy.default().values
    assert [k for r in rulebook.RULES for k in r.policy_keys if k not in values] == []


def test_rule_page_shows_this_sites_policy_values(tmp_path):
    policy = tmp_path / "policy.json"
    policy.write_text('{"dosing.bmi_tier1": 35, "renal.enoxaparin_mg": 20}')
    client = create_app({"database": str(tmp_path / "cds.sqlite3"), "policy": str(policy)}).test_client()
    page = client.get("/docs/rules").get_data(as_text=True)
    section = page.split("<section id='prophylaxis_suggestion'>")[1].split("</section>")[0]
    assert "<td><code>dosing.bmi_tier1</code></td><td><code>35</code></td>" in section
    assert "<td><code>renal.enoxaparin_mg</code></td><td><code>20</code></td>" in section


def test_rule_page_needs_no_token_even_when_auth_is_required(tmp_path):
    trust = Path(__file__).resolve().parents[2] / "conformance" / "sandbox-trust.json"
    app = create_app({"database": str(tmp_path / "cds.sqlite3"), "auth": "required",
                      "trusted_issuers": str(trust)})
    client = app.test_client()
    assert client.post("/cds-services/coagulopathy-risk", json={}).status_code == 401   # hooks need a token
    assert client.get("/docs/rules").status_code == 200


def test_evidence_links_are_real_https_pages():
    for label, url, citation, _verified in vocab.SOURCES.values():
        assert label and citation
        assert re.match(r"https://(doi\.org/10\.|pubmed\.ncbi\.nlm\.nih\.gov/|pmc\.ncbi\.nlm\.nih\.gov/|"
                        r"www\.ncbi\.nlm\.nih\.gov/books/|ashpublications\.org/|dailymed\.nlm\.nih\.gov/|"
                        r"www\.rcog\.org\.uk/guidance/)", url), url   # v3: RCOG Green-top 37a


def test_card_source_points_at_its_rule_on_this_service(client):
    _, payload = run(client, "standard-prophylaxis")
    card = only_card(payload)
    assert card["source"]["url"] == f"http://localhost/docs/rules#{kind(card)}"
    assert client.get(card["source"]["url"].removeprefix("http://localhost")).status_code == 200


def test_card_source_uses_the_public_base_url_behind_a_proxy(tmp_path):
    app = create_app({"database": str(tmp_path / "cds.sqlite3"), "public_base_url": "https://cds.hospital.test/cds"})
    _, payload = run(app.test_client(), "standard-prophylaxis")
    card = only_card(payload)
    assert card["source"]["url"] == f"https://cds.hospital.test/cds/docs/rules#{kind(card)}"
