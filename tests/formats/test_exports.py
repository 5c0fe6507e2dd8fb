"""The package's public surface: a sorted __all__ that names everything it exports."""

from __future__ import annotations

import cargohold.formats as formats


def test_all_is_sorted_and_complete() -> None:
    assert formats.__all__ == sorted(formats.__all__)
    public = {name for name in vars(formats) if not name.startswith("_") and name != "annotations"}
    modules = {"descriptor", "errors", "manifest", "mediatypes", "schema1", "schema1_image"}
    assert public - modules == set(formats.__all__)


def test_every_exported_name_resolves() -> None:
    for name in formats.__all__:
        assert getattr(formats, name) is not None
