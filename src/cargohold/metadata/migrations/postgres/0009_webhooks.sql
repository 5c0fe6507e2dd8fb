-- Webhook endpoints added at run time (cargohold webhooks add, POST /admin/v1/webhooks). The configuration's
-- endpoints are never stored: they live in the configuration, and a name belongs to one of the two.
CREATE TABLE webhook_endpoints (
    name        TEXT COLLATE "C" PRIMARY KEY,
    -- JSON object: the endpoint's settings, the keys of notifications.endpoints
    settings    TEXT NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL
);
