-- Job leases: periodic work (the upload purge, later GC and retention) runs in one process of the
-- deployment at a time. A process holds a job's row until expires_at (seconds since the epoch);
-- another may take it only after that.
CREATE TABLE job_leases (
    name        TEXT COLLATE "C" PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  DOUBLE PRECISION NOT NULL
);
