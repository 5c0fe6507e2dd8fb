-- The state of an upload a blob store keeps outside the registry (an S3 multipart upload), so that
-- any replica can continue or finish it: the store's session id and size, each part's number,
-- ETag and size (a retried request rewrites the same part numbers), and which object a finished
-- blob's bytes live in (stores that cannot rename complete each upload under a key of its own).
CREATE TABLE store_uploads (
    upload_id   TEXT COLLATE "C" PRIMARY KEY,
    session     TEXT NOT NULL,
    size        BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE TABLE store_upload_parts (
    upload_id  TEXT COLLATE "C" NOT NULL,
    number     INTEGER NOT NULL,
    etag       TEXT NOT NULL,
    size       BIGINT NOT NULL,
    PRIMARY KEY (upload_id, number)
);
CREATE TABLE store_blobs (
    digest  TEXT COLLATE "C" PRIMARY KEY,
    key     TEXT NOT NULL
);
