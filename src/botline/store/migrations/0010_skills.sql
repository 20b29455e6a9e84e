-- Skills (instruction packs a gateway loads on demand). A slug is unique per account.
CREATE TABLE skills (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    slug TEXT NOT NULL,
    created_at TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE UNIQUE INDEX skills_slug ON skills (account_id, slug);
CREATE INDEX skills_account ON skills (account_id, created_at);
