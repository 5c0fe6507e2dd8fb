-- Repositories, blobs visible per repository, manifests as pushed, tags,
-- manifest references (for referrers and garbage collection) and upload sessions.
CREATE TABLE repositories (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

-- Every blob whose bytes the blob store holds, with its size.
CREATE TABLE blobs (
    digest      TEXT PRIMARY KEY,
    size        BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- A blob is readable in a repository only through a link here.
CREATE TABLE repository_blobs (
    repository_id  INTEGER NOT NULL REFERENCES repositories(id),
    digest         TEXT NOT NULL REFERENCES blobs(digest),
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (repository_id, digest)
);

-- Manifest bytes exactly as pushed (at most a few MiB each).
CREATE TABLE manifests (
    repository_id   INTEGER NOT NULL REFERENCES repositories(id),
    digest          TEXT NOT NULL,
    media_type      TEXT NOT NULL,
    content         BLOB NOT NULL,
    artifact_type   TEXT,
    subject_digest  TEXT,
    annotations     TEXT,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX manifests_by_subject ON manifests (repository_id, subject_digest);

-- What each manifest references: config and layer blobs, child manifests.
CREATE TABLE manifest_references (
    repository_id    INTEGER NOT NULL,
    manifest_digest  TEXT NOT NULL,
    target_digest    TEXT NOT NULL,
    PRIMARY KEY (repository_id, manifest_digest, target_digest)
);

CREATE TABLE tags (
    repository_id    INTEGER NOT NULL REFERENCES repositories(id),
    name             TEXT NOT NULL,
    manifest_digest  TEXT NOT NULL,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (repository_id, name)
);
CREATE INDEX tags_by_manifest ON tags (repository_id, manifest_digest);

-- Sessions name their repository rather than reference it: a repository
-- exists only once a blob, mount or manifest lands in it.
CREATE TABLE uploads (
    id              TEXT PRIMARY KEY,
    repository      TEXT NOT NULL,
    size            BIGINT NOT NULL,
    algorithm       TEXT NOT NULL,
    hash_state      BLOB,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
