"""Gatekeeping for tests that need root, namespaces or real servers.

Outside CI a missing prerequisite skips the test with the reason; with ``CI`` set it
fails it, so a CI run can never go green by silently skipping the real-server tests.
"""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


def require(condition: bool, what: str) -> None:
    """Fail (in CI) or skip (elsewhere) unless condition holds."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"required for this test and missing in CI: {what}")
    pytest.skip(f"needs {what}")


def require_root() -> None:
    require(os.geteuid() == 0, "root (network namespaces, private servers)")


def require_binary(name: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}", f"/sbin/{name}") if os.path.exists(p)), None
    )
    require(path is not None, f"the {name} binary (apt-get install the package providing it)")
    assert path is not None
    return path
