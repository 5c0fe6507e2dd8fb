"""Generated signing keys in the metadata database: the first one offered is kept, whoever asks."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cargohold.auth.keys import SigningKey, new_private_key, private_pem
from cargohold.auth.stored_keys import stored_signing_key
from cargohold.metadata.signing_keys import keep_first_key
from tests.support.postgres import BACKENDS, database_url


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_url(request, tmp_path)


def test_processes_offering_keys_at_once_all_get_the_first_one(url: str) -> None:
    offers = [private_pem(new_private_key()).decode() for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        kept = list(pool.map(lambda pem: keep_first_key(url, "token", pem), offers))
    assert len(set(kept)) == 1 and kept[0] in offers
    assert keep_first_key(url, "token", offers[-1]) == kept[0]
    assert keep_first_key(url, "schema1", offers[-1]) == offers[-1]  # each name has its own


def test_a_key_file_of_an_earlier_version_becomes_the_stored_key(url: str, tmp_path: Path) -> None:
    earlier = SigningKey.of(new_private_key())
    path = tmp_path / "token-key.pem"
    path.write_bytes(private_pem(earlier.key))
    assert stored_signing_key(url, "token", path, "token signing key").kid == earlier.kid
    path.unlink()  # once stored, the file is not needed
    assert stored_signing_key(url, "token", path, "token signing key").kid == earlier.kid
