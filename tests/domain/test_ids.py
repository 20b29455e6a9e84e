"""Object ids: random version-4 UUIDs, never repeated, also across a batch boundary and a fork."""

from __future__ import annotations

import os
import uuid

from botline.domain.base import IDS_PER_READ, new_id


def test_ids_are_distinct_random_uuids_across_batches() -> None:
    ids = [new_id() for _ in range(3 * IDS_PER_READ)]
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 4 for i in ids)


def test_a_forked_child_does_not_repeat_the_parents_ids() -> None:
    new_id()  # the parent holds a batch from here
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.write(write, new_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert child != new_id()
