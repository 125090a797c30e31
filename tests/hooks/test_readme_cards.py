"""README.md's "Cards" section shows one real card of each kind, as the service gives it now."""
from __future__ import annotations

from card_gallery import EX_BEGIN, EX_END, GALLERY, RETIRED, ROOT, masked, readme_block, render, render_examples

from cds_service.cards import vocabulary as vocab


def test_readme_shows_one_real_card_of_each_kind_and_has_not_drifted():
    assert {kind for kind, *_ in GALLERY} | RETIRED == set(vocab.CARD_KINDS), "every card kind has a gallery row"
    readme = (ROOT / "README.md").read_text()
    assert masked(readme_block(readme)) == masked(render()), \
        "README Cards section out of date: run python tests/hooks/card_gallery.py"


def test_readme_says_what_each_fresh_example_returns():
    """The table under "Cards" is what `cds-service example NAME | curl ...` gives today."""
    readme = (ROOT / "README.md").read_text()
    assert readme_block(readme, EX_BEGIN, EX_END) == render_examples(), \
        "README examples table out of date: run python tests/hooks/card_gallery.py"
