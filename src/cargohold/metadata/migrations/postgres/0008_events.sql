-- Events: the audit log, and the outbox of webhook deliveries written with it.
-- An event of a change is inserted in the same transaction as the change. seq orders events
-- (an identity: never reused, even after a purge), id is the stable id every delivery carries.
CREATE TABLE events (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    at          DOUBLE PRECISION NOT NULL,
    action      TEXT NOT NULL,
    result      TEXT NOT NULL,
    actor       TEXT,
    actor_kind  TEXT NOT NULL,
    address     TEXT NOT NULL,
    user_agent  TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    host        TEXT NOT NULL,
    method      TEXT NOT NULL,
    repository  TEXT NOT NULL,
    tag         TEXT,
    digest      TEXT,
    media_type  TEXT,
    size        BIGINT,
    -- JSON object: a push's tags and a moved tag's previous digest, an admin change's arguments
    detail      TEXT NOT NULL
);
CREATE INDEX events_at ON events (at);
CREATE INDEX events_repository ON events (repository, seq);
CREATE INDEX events_actor ON events (actor, seq);
CREATE INDEX events_action ON events (action, seq);

-- One row per (event, webhook endpoint) that must hear of it. A deliverer claims a due row by
-- setting locked_until (a lease, not a held lock: the POST happens outside any transaction):
-- an expired lease is claimable again, so delivery is at least once.
CREATE TABLE event_deliveries (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_seq        BIGINT NOT NULL REFERENCES events(seq),
    endpoint         TEXT NOT NULL,
    -- pending | delivered | dead
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL,
    next_attempt_at  DOUBLE PRECISION NOT NULL,
    locked_until     DOUBLE PRECISION,
    locked_by        TEXT,
    last_status      INTEGER,
    last_error       TEXT,
    delivered_at     DOUBLE PRECISION,
    UNIQUE (event_seq, endpoint)
);
-- an endpoint's pending deliveries in event order: its next one is the first (delivered rows, which pile
-- up, are not in it), and the listing by state
CREATE INDEX event_deliveries_pending ON event_deliveries (endpoint, event_seq) WHERE state = 'pending';
CREATE INDEX event_deliveries_state ON event_deliveries (state, id);
