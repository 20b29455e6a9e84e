-- Channel messages (recorded before the webhook is acknowledged) and short leases between replicas.
CREATE TABLE inbound (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    dedupe_key TEXT NOT NULL UNIQUE,
    chat_key TEXT NOT NULL,
    pending INTEGER NOT NULL DEFAULT 1,
    expires_ts REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX inbound_pending ON inbound (pending, chat_key, seq);
CREATE INDEX inbound_expiry ON inbound (pending, expires_ts);

CREATE TABLE locks (
    name TEXT PRIMARY KEY,
    token TEXT NOT NULL,
    expires_ts REAL NOT NULL
);
