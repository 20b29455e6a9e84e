-- The lexical index moves from FTS5 to a log each replica reads into memory (store/lexical_index.py).
-- kb_lexical: one row per document in a collection's index (terms: its encoded term frequencies) or
-- taken out of it (terms NULL, a tombstone); seq is the collection's counter when the row was written.
-- kb_lexical_state: the counter, and its value at the collection's last reset (rows removed wholesale).
-- A collection's state row outlives the collection, so a counter value is never reused.
DROP TABLE kb_vocab;
DROP TABLE kb_fts;
DROP TABLE kb_stats;
ALTER TABLE kb_documents DROP COLUMN in_index;

CREATE TABLE kb_lexical (
    id INTEGER PRIMARY KEY,
    collection_id TEXT NOT NULL,
    document_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    terms BLOB,
    UNIQUE (collection_id, document_id)
);
CREATE INDEX kb_lexical_seq ON kb_lexical (collection_id, seq);

CREATE TABLE kb_lexical_state (
    collection_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    reset INTEGER NOT NULL
);

-- What FTS5 held is indexed again by the indexer, into the log.
INSERT INTO kb_queue (document_seq, version, queued_ts, available_ts, attempts)
    SELECT seq, version, updated_ts, 0, 0 FROM kb_documents WHERE state = 'Indexed' AND true
    ON CONFLICT (document_seq) DO NOTHING;
UPDATE kb_documents SET state = 'Queued', data = json_set(data, '$.state', 'Queued') WHERE state = 'Indexed';
