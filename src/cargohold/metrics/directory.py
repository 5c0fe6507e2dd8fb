"""The multiprocess directory: where each worker's metric files are, read by every scrape.

``serve`` makes it fresh before granian starts the workers (files of an earlier run would be added to this
one's), under /dev/shm (the files are memory-mapped and written on every flush; the data directory may be
on a small or slow disk), and removes it when it stops. Its name holds the port and the data directory, so
that two servers on one machine keep apart.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from typing import Final

#: prometheus-client reads it when first imported: set it before anything imports prometheus_client
ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
_SHARED_MEMORY: Final = "/dev/shm"


def directory_for(port: int, data_dir: str) -> str:
    digest = hashlib.sha256(os.path.abspath(data_dir).encode()).hexdigest()[:10]
    base = _SHARED_MEMORY if os.path.isdir(_SHARED_MEMORY) else tempfile.gettempdir()
    return os.path.join(base, f"cargohold-metrics-{port}-{digest}")


def prepare(path: str) -> None:
    """Wipe and make ``path``, and name it to this process's future workers."""
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before its multiprocess directory was named")
    remove(path)
    os.makedirs(path, mode=0o700)
    os.environ[ENV] = path


def remove(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
