-- Scheduled continuations, and one row per claimed firing (compare-and-set on item + fire time).
CREATE TABLE schedules (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    chat_client_id TEXT NOT NULL,
    active INTEGER NOT NULL,
    next_ts REAL,
    created_at TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX schedules_client ON schedules (account_id, chat_client_id, created_at);
CREATE INDEX schedules_due ON schedules (active, next_ts);

CREATE TABLE schedule_claims (
    item_id TEXT NOT NULL,
    fire_ts REAL NOT NULL,
    PRIMARY KEY (item_id, fire_ts)
);
