"""CDS Hooks 2.0 service for COVID-19 coagulopathy and heparin prophylaxis."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.3.0"


def create_app(config=None):
    """App factory; `config` is a Config, a dict of Config field overrides, or None."""
    from .web.app import create_app as _create_app
    return _create_app(config)


# Module paths from before the issue-26 layout (ARCHITECTURE.md), for code outside the package
# that imports them (scripts, notebooks, older tests). The old name is the same module object,
# so a monkeypatch through it reaches the code that runs. Code inside the package uses the new
# paths (tests/test_layers.py refuses an import of a name listed here).
MOVED = {
    "cds_service.hooks.registry": "cds_service.evaluation.state",
    "cds_service.hooks.cards": "cds_service.cards.build",
    "cds_service.hooks.templates": "cds_service.cards.templates",
    "cds_service.hooks.content": "cds_service.cards.content",
    "cds_service.hooks.vocabulary": "cds_service.cards.vocabulary",
    "cds_service.hooks.rulebook": "cds_service.cards.rulebook",
    "cds_service.terminology": "cds_service.cards.terminology",
    "cds_service.hooks.order_check": "cds_service.hooks.orders",  # its cards: cards/orders.py
    "cds_service.assess_cli": "cds_service.cli.assess",
    "cds_service.examples": "cds_service.cli.examples",
    "cds_service.feedback_report": "cds_service.cli.feedback_report",
    "cds_service.check": "cds_service.cli.check",
    "cds_service.replay": "cds_service.cli.replay",
    "cds_service.sites_cli": "cds_service.cli.sites",
    "cds_service.client_jwt": "cds_service.cli.client_jwt",
    "cds_service.integration": "cds_service.cli.integration",
    "cds_service.integration.devfhir": "cds_service.cli.integration.devfhir",
    "cds_service.integration.fire": "cds_service.cli.integration.fire",
    "cds_service.integration.fixtures": "cds_service.cli.integration.fixtures",
    "cds_service.errors": "cds_service.runtime.errors",
    "cds_service.metrics": "cds_service.runtime.metrics",
    "cds_service.synthetic": "cds_service.storage.synthetic",
    "cds_service.sites.silent": "cds_service.hooks.silent",
    "cds_service.app": "cds_service.web.app",
    "cds_service.serving": "cds_service.web.serving",
    "cds_service.schemas": "cds_service.web.schemas",
    "cds_service.capture": "cds_service.web.capture",
    "cds_service.docs_page": "cds_service.web.docs_page",
    "cds_service.docs_page.source_attributes": "cds_service.web.docs_page.source_attributes",
    "cds_service.source_attributes": "cds_service.web.docs_page.attributes",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):
        module = importlib.import_module(MOVED[spec.name])
        spec.loader_state = module.__spec__  # the import system is about to overwrite it
        return module

    def exec_module(self, module):
        module.__spec__ = module.__spec__.loader_state


# First: a moved package's submodules must not be found again, as second copies, under the old
# name through the package's __path__. No module exists under an old name (tests/test_layers.py).
if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.insert(0, _MovedModules())

__all__ = ["create_app", "__version__"]
