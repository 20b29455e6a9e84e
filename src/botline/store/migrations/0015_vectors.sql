-- The embedded vector index (store/sqlite_vectors.py): one row of metadata per collection, one per vector.
-- generation grows with every write to the collection's vectors (replicas rebuild their matrix on a change);
-- a dropped collection keeps its row (model '') so a generation is never reused.
CREATE TABLE kb_vector_sets (
    collection_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    model TEXT NOT NULL,
    generation INTEGER NOT NULL
);

-- vector: float32 little-endian, unit length; version: the document version it was made from.
CREATE TABLE kb_vectors (
    id INTEGER PRIMARY KEY,
    collection_id TEXT NOT NULL,
    document_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    vector BLOB NOT NULL,
    UNIQUE (collection_id, document_id)
);
