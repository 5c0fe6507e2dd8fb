-- Manifests the registry generated from a stored one, kept so that every request, worker and restart
-- serves the same bytes: schema 1 for legacy clients, made for one tag from one source manifest
-- (an image, or the image a list chose). A signature is not deterministic, so the first one kept wins.
CREATE TABLE generated_manifests (
    repository_id  BIGINT NOT NULL REFERENCES repositories(id),
    tag            TEXT COLLATE "C" NOT NULL,
    source_digest  TEXT COLLATE "C" NOT NULL,
    digest         TEXT COLLATE "C" NOT NULL,
    media_type     TEXT NOT NULL,
    content        BYTEA NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (repository_id, tag, source_digest)
);
CREATE INDEX generated_manifests_by_digest ON generated_manifests (repository_id, digest);
CREATE INDEX generated_manifests_by_source ON generated_manifests (repository_id, source_digest);
