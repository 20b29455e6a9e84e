-- Files of a session's answers (images, documents, spoken audio), deleted with the session, and blobs
-- shared by key until they expire (the audio cache). Issue 15.
CREATE TABLE answer_media (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    session_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    meta TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX answer_media_session ON answer_media (session_id, seq);
CREATE INDEX answer_media_message ON answer_media (message_id);

CREATE TABLE shared_blobs (
    key TEXT PRIMARY KEY,
    expires_ts REAL NOT NULL,
    content_type TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX shared_blobs_expiry ON shared_blobs (expires_ts);
