-- Chat clients, and the session lookups the web chat needs (by tag, by expiry).
CREATE TABLE chat_clients (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX chat_clients_account ON chat_clients (account_id, created_at);

ALTER TABLE sessions ADD COLUMN tag TEXT;
ALTER TABLE sessions ADD COLUMN expires_ts REAL NOT NULL DEFAULT 0;
UPDATE sessions SET
    tag = json_extract(data, '$.tag'),
    expires_ts = CAST(strftime('%s', json_extract(data, '$.expiresAt')) AS REAL);
CREATE INDEX sessions_tag ON sessions (account_id, chat_client_id, tag, created_at);
CREATE INDEX sessions_expiry ON sessions (expires_ts);
