"""What a server's blob store holds, read from outside the server for "nothing half-written" checks:
the data directory's files, or the objects of an S3 bucket (under the server's prefix) together with
the rows that name them (``store_blobs``, ``store_uploads``).

A server is on S3 when its environment says so (``CARGOHOLD_STORAGE_DRIVER=s3``), which is how the
tests configure it (``tests.api.conftest.s3_env``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol


def query(url: str, statement: str) -> list[tuple[Any, ...]]:
    from tests.support.postgres import query as run  # it imports this module's importer (servers)

    return run(url, statement)


class StoredBlobs(Protocol):
    def blobs(self) -> dict[str, str]:
        """Digest -> where its bytes are (a file's path, an object's key)."""

    def read(self, where: str) -> Iterator[bytes]:
        """The bytes at ``where`` (one of :meth:`blobs`' values)."""

    def write(self, where: str, data: bytes) -> None:
        """Replace the bytes at ``where`` behind the registry's back (a disk or a bucket gone bad)."""

    def uploads(self) -> set[str]:
        """The ids of the uploads with anything stored."""

    def strays(self) -> list[str]:
        """What is stored that no record names (and so nothing will ever delete)."""


class FilesystemBlobs:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir

    def blobs(self) -> dict[str, str]:
        return {f"{path.parts[-3]}:{path.name}": str(path) for path in (self.root / "blobs").glob("*/*/*")}

    def read(self, where: str) -> Iterator[bytes]:
        with open(where, "rb") as file:
            while chunk := file.read(1 << 20):
                yield chunk

    def write(self, where: str, data: bytes) -> None:
        Path(where).write_bytes(data)

    def uploads(self) -> set[str]:
        folder = self.root / "uploads"
        return set(os.listdir(folder)) if folder.exists() else set()

    def strays(self) -> list[str]:
        return []  # a blob file is named by its digest, an upload file by its session: checked by the callers


class S3Blobs:
    """A bucket under a prefix: finished blobs are ``blobs/<upload id>`` objects named by ``store_blobs``
    rows; an upload is a ``store_uploads`` row, ``uploads/<id>/tail-<size>`` objects and a multipart
    upload at ``blobs/<id>`` (:mod:`cargohold.storage.s3`)."""

    def __init__(self, env: Mapping[str, str], metadata_url: str) -> None:
        import boto3
        from botocore.config import Config

        def option(name: str) -> str:
            return env.get(f"CARGOHOLD_STORAGE_S3_{name}", "")

        self.bucket, self.prefix, self.metadata_url = option("BUCKET"), option("PREFIX"), metadata_url
        self.client: Any = boto3.client(
            "s3", endpoint_url=option("ENDPOINT"), region_name=option("REGION") or "us-east-1",
            aws_access_key_id=option("ACCESS_KEY_ID"), aws_secret_access_key=option("SECRET_ACCESS_KEY"),
            config=Config(s3={"addressing_style": "path"}))

    def _keys(self, under: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + under)
        return [str(item["Key"]) for page in pages for item in page.get("Contents", [])]

    def _multipart(self) -> list[str]:
        listing = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=self.prefix + "blobs/")
        return [str(item["Key"]) for item in listing.get("Uploads", [])]

    def blobs(self) -> dict[str, str]:
        rows = query(self.metadata_url, "SELECT digest, key FROM store_blobs")
        return {str(digest): str(key) for digest, key in rows}

    def read(self, where: str) -> Iterator[bytes]:
        body = self.client.get_object(Bucket=self.bucket, Key=where)["Body"]
        while chunk := body.read(1 << 20):
            yield chunk

    def write(self, where: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=where, Body=data)

    def uploads(self) -> set[str]:
        rows = {str(row[0]) for row in query(self.metadata_url, "SELECT upload_id FROM store_uploads")}
        tails = {key.removeprefix(self.prefix + "uploads/").split("/", 1)[0] for key in self._keys("uploads/")}
        parts = {key.rsplit("/", 1)[1] for key in self._multipart()}
        return rows | tails | parts

    def strays(self) -> list[str]:
        named = set(self.blobs().values())
        sessions = {str(row[0]) for row in query(self.metadata_url, "SELECT upload_id FROM store_uploads")}
        objects = [key for key in self._keys("blobs/") if key not in named]
        tails = [key for key in self._keys("uploads/")
                 if key.removeprefix(self.prefix + "uploads/").split("/", 1)[0] not in sessions]
        multipart = [key for key in self._multipart() if key.rsplit("/", 1)[1] not in sessions]
        return [*objects, *tails, *(f"multipart upload {key}" for key in multipart)]


def stored_blobs(data_dir: Path, env: Mapping[str, str], database_url: str | None) -> StoredBlobs:
    if env.get("CARGOHOLD_STORAGE_DRIVER") == "s3":
        return S3Blobs(env, database_url or f"sqlite://{data_dir / 'metadata.db'}")
    return FilesystemBlobs(data_dir)


def digest_of(store: StoredBlobs, where: str, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    for chunk in store.read(where):
        h.update(chunk)
    return f"{algorithm}:{h.hexdigest()}"
