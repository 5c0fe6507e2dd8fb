"""The package as users install it: a wheel and an sdist, each in a fresh virtual environment.

The build runs offline: setuptools (the build backend) comes from the test environment, and the
fresh environments see the test environment's third-party packages (never its cargohold) through
a ``.pth`` file, so pip still checks that every dependency is met without reaching an index.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.client.images import build_image, write_layout
from tests.support.servers import SRC, CargoholdServer, free_port

ROOT = SRC.parent
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
_JUNK = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


def _source_files() -> set[str]:
    """Every file of the package in src/, as a path relative to src/."""
    return {
        str(path.relative_to(SRC)) for path in SRC.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and not any(p.endswith(".egg-info") for p in path.parts)
    }


def _clean_env(**extra: str) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "PIP_FIND_LINKS", "PIP_CERT")
    return {**{k: os.environ[k] for k in keep if k in os.environ}, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


def _run(*cmd: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, env=_clean_env(),
                            timeout=120)
    assert result.returncode == 0, f"{cmd}: {result.stdout}\n{result.stderr}"
    return result.stdout


@dataclass(frozen=True)
class Dists:
    wheel: Path
    sdist: Path
    deps: Path


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    work = tmp_path_factory.mktemp("install")
    source = work / "source"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(SRC, source / "src", ignore=_JUNK)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    out = work / "dist"
    out.mkdir()
    build = "import sys, setuptools.build_meta as b; out = sys.argv[1]; b.build_wheel(out); b.build_sdist(out)"
    _run(sys.executable, "-c", build, out, cwd=source)
    # the test environment's packages, without this checkout's (editable) cargohold
    deps = work / "deps"
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not re.match(r"(__editable__|cargohold)|.*\.pth$", entry.name):
            (deps / entry.name).symlink_to(entry)
    return Dists(next(out.glob("*.whl")), next(out.glob("*.tar.gz")), deps)


def _fresh_venv(where: Path, deps: Path) -> Path:
    _run(sys.executable, "-m", "venv", "--without-pip", where)
    purelib = _run(where / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    (Path(purelib.strip()) / "test-dependencies.pth").write_text(f"{deps}\n")
    return where


def test_wheel_holds_every_file_of_the_package(dists: Dists) -> None:
    with zipfile.ZipFile(dists.wheel) as wheel:
        packaged = {name for name in wheel.namelist() if ".dist-info/" not in name}
    assert packaged == _source_files()


def test_sdist_holds_every_file_of_the_package(dists: Dists) -> None:
    with tarfile.open(dists.sdist) as sdist:
        names = sdist.getnames()
    top = f"cargohold-{VERSION}/src/"
    assert {name.removeprefix(top) for name in names if name.startswith(top)} >= _source_files()


@pytest.fixture(params=["wheel", "sdist"])
def installed(request: pytest.FixtureRequest, dists: Dists, tmp_path: Path) -> Iterator[Path]:
    venv = _fresh_venv(tmp_path / "venv", dists.deps)
    artifact = dists.wheel if request.param == "wheel" else dists.sdist
    _run(venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-index", "--no-build-isolation", artifact)
    yield venv


def test_installed_package_serves_and_pushes(installed: Path, tmp_path: Path) -> None:
    cargohold = installed / "bin" / "cargohold"
    where = _run(installed / "bin" / "python", "-c", "import cargohold; print(cargohold.__file__)")
    assert where.startswith(str(installed)), where
    assert _run(cargohold, "--version").strip() == f"cargohold {VERSION}"

    layout = tmp_path / "layout"
    write_layout(layout, build_image((3000,)), "v1")
    server = CargoholdServer(tmp_path / "data", free_port(), command=[str(cargohold)], env=_clean_env())
    server.start()
    try:
        _run(cargohold, "push", f"oci:{layout}:v1", f"{server.host}/installed/app:v1")
        assert httpx.get(f"{server.url}/v2/_catalog").json() == {"repositories": ["installed/app"]}
        assert _run(cargohold, "tags", f"{server.host}/installed/app").split() == ["v1"]
        page = httpx.get(f"{server.url}/ui/repositories/installed/app/-/tags")  # templates and static files
        assert page.status_code == 200 and ">v1</a>" in page.text, page.text
        assert "copy" in httpx.get(f"{server.url}/ui/static/ui.js").text
    finally:
        server.stop()
    assert server.process is not None and server.process.returncode == 0, server.log()


def test_a_package_without_its_migrations_fails_to_start_and_leaves_no_database(tmp_path: Path) -> None:
    broken = tmp_path / "site"
    shutil.copytree(SRC / "cargohold", broken / "cargohold", ignore=_JUNK)
    shutil.rmtree(broken / "cargohold" / "metadata" / "migrations" / "sqlite")
    data = tmp_path / "data"
    result = subprocess.run(
        [sys.executable, "-m", "cargohold.cli.main", "serve", "--data-dir", str(data),
         "--listen", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, env=_clean_env(PYTHONPATH=str(broken)), timeout=30,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [result.stderr.strip()], result.stderr  # one line
    assert "migrations are missing" in result.stderr
    assert not list(data.glob("metadata.db*"))
