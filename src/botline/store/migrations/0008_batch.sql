-- Batch workflows, jobs (with their event log) and items; pending items form the claim queue.
CREATE TABLE batch_workflows (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX batch_workflows_account ON batch_workflows (account_id, created_at);

CREATE TABLE batch_jobs (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX batch_jobs_account ON batch_jobs (account_id, created_at);
CREATE INDEX batch_jobs_workflow ON batch_jobs (workflow_id);
CREATE INDEX batch_jobs_state ON batch_jobs (state, created_at);

CREATE TABLE batch_job_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX batch_job_events_job ON batch_job_events (job_id, id);

-- claim_token/lease_until: the worker holding a Pending item, until when (epoch seconds).
CREATE TABLE batch_items (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    state TEXT NOT NULL,
    claim_token TEXT,
    lease_until REAL,
    cost REAL NOT NULL DEFAULT 0,
    confidence REAL,
    processed_ts REAL,
    data TEXT NOT NULL
);
CREATE UNIQUE INDEX batch_items_order ON batch_items (job_id, sequence);
CREATE INDEX batch_items_queue ON batch_items (job_id, state, priority DESC, sequence);
CREATE INDEX batch_items_processed ON batch_items (job_id, processed_ts);
