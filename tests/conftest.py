"""Shared test setup. Fixture modules live in tests/fixtures/ and are loaded automatically."""

from __future__ import annotations

import pkgutil
from pathlib import Path

import pytest

import tests.fixtures as _fixtures

pytest_plugins = [f"tests.fixtures.{m.name}" for m in pkgutil.iter_modules(_fixtures.__path__)]

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
