-- Online garbage collection (cargohold.service.gc). What a change may have left unreferenced is queued
-- in the change's own transaction, with when it was queued (a later change moves the time on): a
-- manifest to review in its repository, a blob digest to review everywhere. A review row is also what
-- serializes a collection with the changes that queue it (see cargohold.service.gc).
CREATE TABLE gc_manifest_review (
    repository_id  INTEGER NOT NULL,
    digest         TEXT NOT NULL,
    queued_at      BIGINT NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE TABLE gc_blob_review (
    digest     TEXT PRIMARY KEY,
    queued_at  BIGINT NOT NULL
);
-- The bytes of collected blobs, deleted after their row: by object key (a store that keeps a key per
-- upload) or by digest (the filesystem store), tried again after a failure.
CREATE TABLE gc_object_deletions (
    id           INTEGER PRIMARY KEY,
    digest       TEXT NOT NULL,
    storage_key  TEXT,
    size         BIGINT NOT NULL,
    queued_at    BIGINT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT
);
CREATE INDEX gc_object_deletions_by_digest ON gc_object_deletions (digest);
-- Each collection, real or dry: counts, bytes freed, errors, and what it deleted per repository (JSON).
CREATE TABLE gc_runs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    started      REAL NOT NULL,
    finished     REAL,
    dry_run      BOOLEAN NOT NULL,
    manifests    BIGINT NOT NULL DEFAULT 0,
    blobs        BIGINT NOT NULL DEFAULT 0,
    bytes_freed  BIGINT NOT NULL DEFAULT 0,
    errors       INTEGER NOT NULL DEFAULT 0,
    detail       TEXT NOT NULL DEFAULT '{}'
);
-- Which manifests reference a digest (a parent index, a blob's users) and which upload commits one.
CREATE INDEX manifest_references_by_target ON manifest_references (target_digest, repository_id);
CREATE INDEX uploads_by_digest ON uploads (digest);
-- What was unreferenced before this version: untagged manifests and blobs with a link no manifest of
-- its repository references, as of their creation.
INSERT INTO gc_manifest_review (repository_id, digest, queued_at)
SELECT m.repository_id, m.digest, m.created_at FROM manifests m
WHERE NOT EXISTS (SELECT 1 FROM tags t WHERE t.repository_id = m.repository_id AND t.manifest_digest = m.digest);
INSERT INTO gc_blob_review (digest, queued_at)
SELECT b.digest, COALESCE((SELECT MAX(rb.created_at) FROM repository_blobs rb WHERE rb.digest = b.digest), b.created_at)
FROM blobs b
WHERE NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest)
   OR EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest AND NOT EXISTS (
       SELECT 1 FROM manifest_references mr WHERE mr.repository_id = rb.repository_id AND mr.target_digest = rb.digest));
