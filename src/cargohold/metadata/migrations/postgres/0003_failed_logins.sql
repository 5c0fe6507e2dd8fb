-- Failed logins, per account name and per client address, shared by every
-- worker process (the limit holds however many workers answer).
CREATE TABLE failed_logins (
    key  TEXT COLLATE "C" NOT NULL,
    at   DOUBLE PRECISION NOT NULL
);
CREATE INDEX failed_logins_by_key ON failed_logins (key, at);
CREATE INDEX failed_logins_by_time ON failed_logins (at);
