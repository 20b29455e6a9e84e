-- Short-lived counters for rate limits (fixed windows); rows expire.
CREATE TABLE counters (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX counters_expiry ON counters (expires_at);
