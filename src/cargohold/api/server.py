"""Building the application from configuration, in each worker process."""

from __future__ import annotations

import logging
import os
import sys

from ..auth.setup import build_access
from ..config import ServerConfig
from ..metadata import open_metadata_store
from ..service import Registry, RegistryOptions
from ..storage import open_blob_store
from .app import RegistryApp

#: the resolved configuration travels to worker processes in this variable
CONFIG_ENV = "CARGOHOLD_RESOLVED_CONFIG"


def create_app(config: ServerConfig) -> RegistryApp:
    os.makedirs(config.data_dir, exist_ok=True)
    blobs = open_blob_store(config.storage_driver, {"root": config.blob_root})
    meta = open_metadata_store(config.metadata_url)
    options = RegistryOptions(
        delete_enabled=config.delete_enabled,
        read_only=config.read_only,
        max_manifest_size=config.max_manifest_size,
        upload_max_age_seconds=config.upload_max_age_seconds,
    )
    access = build_access(config)
    return RegistryApp(Registry(blobs, meta, options), access.controller, access.endpoints)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("cargohold")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def app_from_environment() -> RegistryApp:
    """Granian's factory target: rebuild the app from the serialized configuration."""
    config = ServerConfig.from_json(os.environ[CONFIG_ENV])
    configure_logging(config.log_level)
    return create_app(config)
