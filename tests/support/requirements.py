"""What a test needs from the machine: missing, it skips on a developer's machine and fails under CI.

A skip under CI would hide a test that never ran behind a green run, so with ``CI=true`` (as ``.ci/run``
is run) every unmet requirement is a failure: ``scripts/test`` installs all of them.
"""

from __future__ import annotations

import importlib
import os
import shutil
from types import ModuleType
from typing import NoReturn

import pytest


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def unmet(reason: str) -> NoReturn:
    if under_ci():
        pytest.fail(f"CI=true and a test cannot run: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require(condition: bool, reason: str) -> None:
    """Skip the test (or module) with ``reason`` unless ``condition``; under CI, fail instead."""
    if not condition:
        unmet(reason)


def require_tool(binary: str, package: str | None = None) -> str:
    """The path of an installed program (a package of scripts/apt-packages.txt)."""
    path = shutil.which(binary)
    if path is None:
        unmet(f"{binary} is not installed (apt-get install {package or binary}; see scripts/apt-packages.txt)")
    return path


def require_module(name: str, package: str) -> ModuleType:
    """An installed Python module (a package of requirements-test.lock)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        error = exc
    unmet(f"{name} cannot be imported ({error}): pip install {package} (see requirements-test.lock)")


def requires_tool(binary: str, package: str | None = None) -> pytest.MarkDecorator:
    """A mark for tests, classes or modules that run ``binary``; checked before each test starts."""
    return pytest.mark.requires_tool(binary, package)


def check_marks(item: pytest.Item) -> None:
    """Apply the ``requires_tool`` marks of a test (called from the root conftest's setup hook)."""
    for mark in item.iter_markers("requires_tool"):
        require_tool(*mark.args)
