"""The service's version: the package version, plus `git describe` when running from a checkout.

Shown by `cds-service --version`, in the /healthz body, in the start-up log line and stored in
every audit row (`hook_call.service_version`), so an answer can be traced to the code that
gave it. An installed wheel has no git metadata: its version is the package version alone.
"""
from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path

from . import __version__

_CHECKOUT = Path(__file__).resolve().parent.parent


def package_version() -> str:
    """The running code's own version (cds_service.__version__, from which pyproject.toml takes the
    wheel's). Not the installed metadata: an editable install keeps the version it was installed
    with, and `--version` then disagreed with the code and the CHANGELOG (issue 22)."""
    return __version__


@lru_cache(maxsize=1)
def git_describe() -> str | None:
    """`git describe --tags --always --dirty` of the checkout this module runs from, or None
    (installed wheel, no git, not a repository, git slow or failing)."""
    if not (_CHECKOUT / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(_CHECKOUT), "describe", "--tags", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=2, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    text = out.stdout.strip()
    return text if out.returncode == 0 and text else None


@lru_cache(maxsize=1)
def full_version() -> str:
    """'0.1.0' or '0.1.0 (git 85d26d2-dirty)'."""
    described = git_describe()
    return f"{package_version()} (git {described})" if described else package_version()
