"""Shared test settings: keep the user's own K2 configuration out of every run."""

from __future__ import annotations

import os

import pytest

K2_VARIABLES = [name for name in os.environ if name.startswith("K2_") and name not in ("K2_CACHE_DIR",)]


@pytest.fixture(autouse=True)
def _no_user_k2_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests set the K2_* variables they need; none leak in from the developer's shell."""
    for name in K2_VARIABLES:
        monkeypatch.delenv(name, raising=False)
