-- LLM connections (names unique per account) and their usage counters (issue 14).
CREATE TABLE llm_connections (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    data TEXT NOT NULL,
    UNIQUE (account_id, name)
);
CREATE INDEX llm_connections_account ON llm_connections (account_id, created_at);

CREATE TABLE llm_connection_stats (
    connection_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    api_calls INTEGER NOT NULL DEFAULT 0,
    tokens_in INTEGER NOT NULL DEFAULT 0,
    tokens_out INTEGER NOT NULL DEFAULT 0,
    llm_tokens_in INTEGER NOT NULL DEFAULT 0,
    llm_tokens_out INTEGER NOT NULL DEFAULT 0,
    policy_tokens_in INTEGER NOT NULL DEFAULT 0,
    policy_tokens_out INTEGER NOT NULL DEFAULT 0,
    policy_violations INTEGER NOT NULL DEFAULT 0,
    alerts INTEGER NOT NULL DEFAULT 0,
    blocks INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX llm_connection_stats_account ON llm_connection_stats (account_id);
