"""What the tests use of a real S3 server (SeaweedFS, Swift's S3 API): its endpoint, a client, key
prefixes of one shared bucket, and ``serve``'s ``storage.s3`` options for one of them."""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

BUCKET = "cargohold-tests"


class S3Api:
    port: int
    _names: itertools.count[int]
    access_key: ClassVar[str]
    secret_key: ClassVar[str]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
                            config=Config(s3={"addressing_style": "path"}))

    def prefix(self) -> str:
        """A new key prefix, under which the bucket is empty."""
        return f"test-{next(self._names)}/"

    def keys(self, prefix: str) -> list[str]:
        listing = self.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        return [str(item["Key"]) for item in listing.get("Contents", [])]

    def options(self, prefix: str, **extra: object) -> dict[str, object]:
        """``storage.s3`` options for the bucket under ``prefix``."""
        return {"endpoint": self.endpoint, "region": "us-east-1", "bucket": BUCKET, "prefix": prefix,
                "access_key_id": self.access_key, "secret_access_key": self.secret_key,
                "part_size": 5 * 1024 * 1024, "redirect": True, "redirect_expiry_seconds": 600, **extra}
