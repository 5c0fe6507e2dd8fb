"""Namespace quotas (:mod:`cargohold.quotas`) inside a manifest push's or delete's unit of work."""

from __future__ import annotations

from ..errcodes import Denied
from ..metadata.store import MetadataQueries, NewManifest
from ..sizes import human_size


async def charge_quota(tx: MetadataQueries, repository: str, repository_id: int | None, manifest: NewManifest) -> None:
    """DENIED if storing the manifest would take its namespace over its quota; else its use grows by what the
    manifest adds. Holds the quota's lock until the unit of work ends (see :mod:`cargohold.metadata.sql_usage`)."""
    charge = await tx.charge_quota(repository, repository_id, manifest)
    if charge is None:
        return
    quota = charge.quota
    if not charge.fits:
        raise Denied(
            f"{quota} exceeded: pushing {manifest.digest} to {repository} needs {human_size(charge.needed)} "
            f"({charge.needed} bytes) more; limit {quota.limit_bytes} bytes, used {quota.used_bytes} bytes, "
            f"needed {charge.needed} bytes",
            detail={"namespace": quota.namespace, "limit": quota.limit_bytes, "used": quota.used_bytes,
                    "needed": charge.needed},
        )
    await tx.add_quota_usage(quota.namespace, charge.needed)
