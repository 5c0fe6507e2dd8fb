"""Where the filesystem store keeps things, as one pure function per kind of object.

::

    <root>/
      blobs/
        sha256/
          ab/
            abcdef…(64 hex)         the blob's bytes, placed only by rename after
                                    their digest was verified
      uploads/
        <upload id>                 bytes received so far for one upload session
      tmp/                          scratch space on the same filesystem

Nothing else in the package joins storage paths.
"""

from __future__ import annotations

import os

from ..digest import Digest


def blob_path(root: str, digest: Digest) -> str:
    return os.path.join(root, "blobs", digest.algorithm, digest.hex[:2], digest.hex)


def uploads_dir(root: str) -> str:
    return os.path.join(root, "uploads")


def upload_path(root: str, upload_id: str) -> str:
    return os.path.join(root, "uploads", upload_id)
