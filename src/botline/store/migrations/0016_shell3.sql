-- Values every replica shares, made once (the shell's link-signing key), and bytes reserved by
-- writes in flight (shell uploads), so two uploads cannot both pass a quota they exceed together.
CREATE TABLE server_values (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE reservations (
    scope TEXT NOT NULL,
    id TEXT NOT NULL,
    amount INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (scope, id)
);
