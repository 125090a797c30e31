"""Package data: the JSON Schemas (`schemas/`) and the synthetic patients (`patients/`).

This directory is the single source of truth; the repository's `conformance/schemas` and
`conformance/patients` are symbolic links to it, so integrators find them where the
conformance kit always had them and an installed wheel carries them (pyproject.toml,
package-data). Code finds them with importlib.resources through `path()`.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path


def path(*parts: str) -> Path:
    """The file-system path of a packaged data file or directory (wheels install unpacked)."""
    return Path(str(resources.files(__name__).joinpath(*parts)))
