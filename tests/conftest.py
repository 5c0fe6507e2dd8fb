"""Fixtures shared by every test folder: a real cargohold server on a loopback port."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres import PostgresCluster, start_cluster
from tests.support.requirements import check_marks, under_ci
from tests.support.seaweedfs import SeaweedFS, start_seaweedfs
from tests.support.servers import CargoholdServer, cargohold
from tests.support.swift import Swift, start_swift


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "requires_tool(binary, package=None): the test runs this program (skips if missing; fails under CI)"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    check_marks(item)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI a skip from anywhere (a bare ``pytest.skip`` too) is a failure: nothing may go untested."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and not hasattr(report, "wasxfail") and under_ci():
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"CI=true and the test skipped: {reason}"


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CargoholdServer]:
    """One server for tests that use their own repository names."""
    with cargohold(tmp_path_factory.mktemp("registry")) as server:
        yield server


@pytest.fixture()
def fresh_registry(tmp_path: Path) -> Iterator[CargoholdServer]:
    """A server of the test's own, for checks on everything in storage."""
    with cargohold(tmp_path) as server:
        yield server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the session (in /tmp: its server user must reach the folder)."""
    cluster = start_cluster(Path(tempfile.mkdtemp(prefix="cargohold-pg-")))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[SeaweedFS]:
    """One throwaway SeaweedFS S3 server for the session; each test makes a bucket of its own.

    Room for 12.8 GB: the whole suite writes more than a gigabyte to it, and deleted objects keep their
    space until a vacuum (20 volumes filled up and answered InternalError); volumes grow as they are written."""
    server = start_seaweedfs(Path(tempfile.mkdtemp(prefix="cargohold-s3-")), volumes=200)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def swift() -> Iterator[Swift]:
    """One throwaway OpenStack Swift with its S3 API for the session: the second S3 implementation."""
    server = start_swift(Path(tempfile.mkdtemp(prefix="cargohold-swift-")))
    try:
        yield server
    finally:
        server.stop()
