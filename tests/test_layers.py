"""Which package may import which: the layering rules, checked on the source's imports.

Every import counts, those under ``TYPE_CHECKING`` and inside functions too:
each one is a dependency of the module, and a cycle through type hints is a
cycle still.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

import cargohold

SRC = Path(cargohold.__file__).parent
#: the modules that are values only: no I/O, no server, no client
PURE = ("cargohold.digest", "cargohold.reference", "cargohold.errcodes", "cargohold.jsontext", "cargohold.access_model",
        "cargohold.memo")
SERVER = ("api", "http", "service", "storage", "metadata", "auth", "config", "jobs", "events", "webhooks")

#: (package, the cargohold modules it must not import, exceptions: module -> why)
RULES: list[tuple[str, tuple[str, ...], dict[str, str]]] = [
    ("client", tuple(f"cargohold.{p}" for p in SERVER), {}),
    ("auth", ("cargohold.api", "cargohold.http"), {}),
    # stores are below everything that uses them; the access model's values are in a pure module both import
    ("metadata", tuple(f"cargohold.{p}" for p in ("auth", "api", "http", "service")), {}),
    ("http", tuple(f"cargohold.{p}" for p in ("api", "auth", "service", "storage", "metadata", "config", "client")),
     {}),
    # periodic work goes through the service facade and takes its lease through a protocol of its own
    ("jobs", tuple(f"cargohold.{p}" for p in ("api", "http", "auth", "storage", "metadata", "client")), {}),
    # the events' model and origin: values, below every store and the service
    ("events", tuple(f"cargohold.{p}" for p in ("api", "http", "auth", "service", "storage", "metadata", "jobs",
                                                 "client", "config")), {}),
    # webhooks: endpoints, payloads and the sender over the outbox's protocols, below the API and the stores
    ("webhooks", tuple(f"cargohold.{p}" for p in ("api", "http", "auth", "service", "storage", "metadata", "jobs",
                                                   "client")), {}),
    # the pull-through cache: the service's reads and the store's units of work, served by the API above it
    ("proxy", tuple(f"cargohold.{p}" for p in ("api", "http", "auth", "jobs", "webhooks", "mirror")), {}),
    # mirror jobs copy with the client over HTTP, through the API like any push: never into the stores
    ("mirror", tuple(f"cargohold.{p}" for p in ("api", "http", "service", "storage", "metadata", "proxy")), {}),
    ("api", ("cargohold.metadata", "cargohold.storage"), {
        # the composition root: it opens the stores named by the configuration and hands them to the service
        "cargohold.api.server": "builds the stores",
        # the admin API changes the access model through its store's units of work
        "cargohold.api.admin_endpoints": "administers the access store",
    }),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The absolute names of the modules ``path`` imports (``from m import n``: both m and m.n)."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            found.add(source)
            found.update(f"{source}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "cargohold" or name.startswith("cargohold.")}


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(f"{p}.") for p in prefixes)


def violations(path: Path, wrong: Callable[[str], bool]) -> list[str]:
    """``module imports name`` for each wrong import (``from m import n``: m, not also m.n)."""
    names = sorted(name for name in imports(path) if wrong(name))
    return [f"{module_name(path)} imports {name}" for name in names if name.rpartition(".")[0] not in names]


def modules(package: str) -> list[Path]:
    return sorted((SRC / package).rglob("*.py"))


def test_the_rules_see_imports() -> None:
    """The parser resolves relative imports (else every rule below would pass on nothing)."""
    assert "cargohold.http.request" in imports(SRC / "api" / "request.py")
    assert "cargohold.errcodes" in imports(SRC / "http" / "errors.py")
    assert "cargohold.jsontext" in imports(SRC / "formats" / "_json.py")
    assert "cargohold.auth.access" in imports(SRC / "auth" / "__init__.py")


@pytest.mark.parametrize("package, forbidden, allowed", RULES, ids=[rule[0] for rule in RULES])
def test_package_keeps_to_its_layer(package: str, forbidden: tuple[str, ...], allowed: dict[str, str]) -> None:
    wrong = [
        line
        for path in modules(package)
        if module_name(path) not in allowed
        for line in violations(path, lambda name: within(name, forbidden))
    ]
    assert not wrong, "\n".join(wrong)


def test_pure_modules_import_only_pure_modules() -> None:
    wrong = [
        line
        for module in PURE
        for line in violations(SRC.parent / f"{module.replace('.', '/')}.py",
                               lambda name: name != "cargohold" and not within(name, PURE))
    ]
    assert not wrong, "\n".join(wrong)


def test_formats_import_only_pure_modules() -> None:
    allowed = (*PURE, "cargohold.formats")
    wrong = [
        line
        for path in modules("formats")
        for line in violations(path, lambda name: name != "cargohold" and not within(name, allowed))
    ]
    assert not wrong, "\n".join(wrong)
