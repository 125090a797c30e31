"""CDS Hooks 2.0 service for COVID-19 coagulopathy and heparin prophylaxis."""
from __future__ import annotations

__version__ = "0.4.0"


def create_app(config=None):
    """App factory; `config` is a Config, a dict of Config field overrides, or None."""
    from .web.app import create_app as _create_app
    return _create_app(config)


__all__ = ["create_app", "__version__"]
