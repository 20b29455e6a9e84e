-- Leases moved into the process (store/process_locks.py): one process owns an SQLite file.
DROP TABLE locks;
