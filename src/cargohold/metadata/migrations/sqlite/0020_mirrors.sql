-- Mirroring (cargohold mirror, /admin/v1/mirrors): jobs that copy a repository from one registry to another
-- on a schedule, and the runs of each job. The secrets of a job are never stored here, only where to read them.
CREATE TABLE mirror_jobs (
    name             TEXT PRIMARY KEY,
    -- REGISTRY/REPOSITORY to copy from, with "local" as the registry for this one
    source           TEXT NOT NULL,
    -- where the copies go: a prefix in this registry, or REGISTRY/PREFIX
    destination      TEXT NOT NULL,
    -- the tags copied: a regular expression (full match) or a semver range, empty to copy every tag
    tags             TEXT NOT NULL,
    interval_seconds DOUBLE PRECISION NOT NULL,
    -- JSON list of "os/arch[/variant]", empty for every platform
    platforms        TEXT NOT NULL,
    with_referrers   BOOLEAN NOT NULL,
    only_signed      BOOLEAN NOT NULL,
    prune            BOOLEAN NOT NULL,
    -- credentials for the remote end: a user and a file holding the password, or a docker config file
    username         TEXT,
    password_file    TEXT,
    docker_config    TEXT,
    insecure         BOOLEAN NOT NULL,
    created_at       DOUBLE PRECISION NOT NULL,
    -- when the next run is due: a failed run moves it by the backoff, capped at the interval
    next_run_at      DOUBLE PRECISION NOT NULL,
    -- failed runs in a row (0 after a run without errors)
    failures         INTEGER NOT NULL
);
CREATE TABLE mirror_runs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    job          TEXT NOT NULL REFERENCES mirror_jobs(name) ON DELETE CASCADE,
    -- "schedule", "command" (cargohold mirror run) or "api" (POST /admin/v1/mirrors/{name}/run)
    started_by   TEXT NOT NULL,
    started_at   DOUBLE PRECISION NOT NULL,
    finished_at  DOUBLE PRECISION,
    -- JSON: tags copied tag to digest, skipped tag to why, errors tag (or empty) to message, pruned tags
    copied       TEXT NOT NULL,
    skipped      TEXT NOT NULL,
    errors       TEXT NOT NULL,
    pruned       TEXT NOT NULL
);
CREATE INDEX mirror_runs_by_job ON mirror_runs (job, id);
