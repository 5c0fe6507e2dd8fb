-- Private keys the registry generated for itself (the token signing key, the schema 1 signing key)
-- when none is configured: kept in the database, so that every replica signs with the same key.
-- The first replica to insert a key wins, the others read it back.
CREATE TABLE signing_keys (
    name        TEXT COLLATE "C" PRIMARY KEY,
    pem         TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
