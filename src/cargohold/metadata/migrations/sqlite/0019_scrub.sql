-- The scrub (cargohold scrub, /admin/v1/scrub): each run re-hashes a sample of stored blobs, taken in
-- digest order after the last run's last_digest, so that every blob is checked in turn.
CREATE TABLE scrub_runs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at       DOUBLE PRECISION NOT NULL,
    finished_at      DOUBLE PRECISION NOT NULL,
    -- "job" (the periodic scrub) or "command" (cargohold scrub)
    started_by       TEXT NOT NULL,
    checked          BIGINT NOT NULL,
    bytes_checked    BIGINT NOT NULL,
    problems         BIGINT NOT NULL,
    -- files or objects a crash left that no row named (NULL: the run did not sweep)
    orphans_removed  BIGINT,
    -- the last digest checked: the next run starts after it (NULL: start from the first)
    last_digest      TEXT,
    error            TEXT
);
-- Blobs whose stored bytes did not match their row when last checked ("corrupt": other bytes or size,
-- "missing": no bytes). A later clean check, or the blob's deletion, removes the finding.
CREATE TABLE scrub_findings (
    digest          TEXT PRIMARY KEY REFERENCES blobs(digest) ON DELETE CASCADE,
    problem         TEXT NOT NULL,
    expected_size   BIGINT NOT NULL,
    found_size      BIGINT,
    found_digest    TEXT,
    first_found_at  DOUBLE PRECISION NOT NULL,
    last_found_at   DOUBLE PRECISION NOT NULL
);
