-- A finished upload's verified digest is recorded before its bytes are placed, and
-- the row is kept (completed) after the blob is recorded: a retried final PUT,
-- or the purge after a crash, can then finish the commit or answer it again.
ALTER TABLE uploads ADD COLUMN digest TEXT;
ALTER TABLE uploads ADD COLUMN completed BOOLEAN NOT NULL DEFAULT FALSE;
