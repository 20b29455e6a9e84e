-- Knowledge collections, their documents, the indexing queue and the lexical index (store/knowledge.py).
CREATE TABLE kb_collections (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX kb_collections_account ON kb_collections (account_id, created_at);

-- seq is the document's row in kb_fts; in_index says whether it has one (its current text is searchable).
CREATE TABLE kb_documents (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    account_id TEXT NOT NULL,
    collection_id TEXT NOT NULL,
    name TEXT NOT NULL,
    reference TEXT,
    state TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_ts REAL NOT NULL,
    updated_ts REAL NOT NULL,
    indexed_ts REAL,
    in_index INTEGER NOT NULL DEFAULT 0,
    data TEXT NOT NULL,
    UNIQUE (collection_id, name)
);
CREATE INDEX kb_documents_reference ON kb_documents (collection_id, reference);

CREATE TABLE kb_queue (
    document_seq INTEGER PRIMARY KEY,
    version INTEGER NOT NULL,
    queued_ts REAL NOT NULL,
    available_ts REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX kb_queue_available ON kb_queue (available_ts, queued_ts);

-- coll holds one token naming the collection (weight 0 in bm25), body the analysed terms.
CREATE VIRTUAL TABLE kb_fts USING fts5(coll, body, tokenize = 'unicode61 remove_diacritics 0');
CREATE VIRTUAL TABLE kb_vocab USING fts5vocab(kb_fts, 'row');
CREATE TABLE kb_stats (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO kb_stats (name, value) VALUES ('indexed', 0);
