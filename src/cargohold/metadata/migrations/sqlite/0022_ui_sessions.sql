-- Web UI sessions: the cookie holds a random token, the row its SHA-256 (a copy of the table logs no one
-- in). A session ends at expires_at, at logout (its row goes), or once its account's credentials change
-- (credentials_generation no longer matches). Each form carries the session's csrf token.
CREATE TABLE ui_sessions (
    id                      TEXT PRIMARY KEY,
    account                 TEXT NOT NULL,
    credentials_generation  BIGINT NOT NULL,
    csrf                    TEXT NOT NULL,
    created_at              BIGINT NOT NULL,
    expires_at              BIGINT NOT NULL
);
CREATE INDEX ui_sessions_by_expiry ON ui_sessions (expires_at);
