-- Per-user memories (Text notes and DateReminder entries). Reads filter on expires_ts; the purge deletes by it.
CREATE TABLE memories (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    external_user_id TEXT NOT NULL,
    format TEXT NOT NULL,
    updated_ts REAL NOT NULL,
    expires_ts REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX memories_user ON memories (account_id, external_user_id, expires_ts);
CREATE INDEX memories_account ON memories (account_id, updated_ts);
CREATE INDEX memories_expiry ON memories (expires_ts);
