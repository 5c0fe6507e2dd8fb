-- When each manifest was last served by a GET (by tag or by digest, a HEAD is no pull), for retention's
-- pulled_within and most_recently_pulled_count and for usage figures. Workers hold pulls in memory and
-- write them in batches every few seconds, only ever moving pulled_at forward, and a manifest's row goes
-- with the manifest.
CREATE TABLE manifest_pulls (
    repository_id  INTEGER NOT NULL REFERENCES repositories(id),
    digest         TEXT NOT NULL,
    pulled_at      BIGINT NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
