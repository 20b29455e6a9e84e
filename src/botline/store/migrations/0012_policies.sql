-- AI policies and the violations the judge found (issue 14).
CREATE TABLE policies (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX policies_account ON policies (account_id, created_at);

CREATE TABLE policy_violations (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    policy_id TEXT NOT NULL,
    ts REAL NOT NULL,
    severity TEXT NOT NULL,
    block INTEGER NOT NULL,
    alert INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX policy_violations_account ON policy_violations (account_id, ts);
