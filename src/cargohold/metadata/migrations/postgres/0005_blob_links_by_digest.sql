-- Which repositories link a blob: a mount without `from` looks for one the caller may pull.
CREATE INDEX repository_blobs_by_digest ON repository_blobs (digest, repository_id);
