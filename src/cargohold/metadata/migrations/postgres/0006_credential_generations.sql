-- Credential generations: every new account and every change of an account's credentials (password,
-- robot token, disabled or enabled) takes the next value of one counter. Access tokens and refresh
-- tokens carry the generation they were issued under and are void once it is no longer the account's:
-- an exact comparison, where timestamps in whole seconds could not order a token and a change made in
-- the same second. Values are never reused, so a token of a deleted account never matches a new
-- account of the same name.
CREATE TABLE credential_generation (
    only_row  BIGINT PRIMARY KEY CHECK (only_row = 1),
    value     BIGINT NOT NULL
);
INSERT INTO credential_generation (only_row, value) SELECT 1, COALESCE(MAX(id), 0) FROM accounts;

ALTER TABLE accounts ADD COLUMN credentials_generation BIGINT NOT NULL DEFAULT 0;
UPDATE accounts SET credentials_generation = id;

-- Refresh tokens stored before this migration belong to the current credentials (a change deleted
-- the older ones).
ALTER TABLE refresh_tokens ADD COLUMN credentials_generation BIGINT NOT NULL DEFAULT 0;
UPDATE refresh_tokens SET credentials_generation =
    (SELECT a.credentials_generation FROM accounts a WHERE a.id = refresh_tokens.account_id);
