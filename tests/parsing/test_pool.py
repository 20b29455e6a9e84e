"""The worker pool: jobs run in other processes, with a time limit, and failures replace the worker."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from botline.parsing import (
    JobFailed,
    JobRejected,
    JobTimedOut,
    PoolBusy,
    PoolClosed,
    PoolLimits,
    WorkerCrashed,
    WorkerPool,
)


def limits(**overrides: float) -> PoolLimits:
    values: dict[str, float] = {"workers": 1, "timeout_seconds": 5.0, "max_queued": 8, **overrides}
    return PoolLimits(workers=int(values["workers"]), timeout_seconds=values["timeout_seconds"],
                      max_queued=int(values["max_queued"]))


def hang() -> None:
    threading.Event().wait()


def crash() -> None:
    os._exit(3)


def fail() -> None:
    raise ValueError("something inside the parser")


def refuse() -> None:
    raise JobRejected("This file is not a document.")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_job_runs_in_a_worker_process_that_is_reused() -> None:
    async with WorkerPool(limits()) as pool:
        first = await pool.run(os.getpid)
        assert first != os.getpid()
        assert await pool.run(os.getpid) == first


async def test_a_job_past_its_time_limit_gets_its_worker_killed_and_replaced() -> None:
    async with WorkerPool(limits(timeout_seconds=0.3)) as pool:
        stuck = await pool.run(os.getpid)
        with pytest.raises(JobTimedOut) as caught:
            await pool.run(hang)
        assert caught.value.message == "The document could not be read in time."
        replacement = await pool.run(os.getpid)
        assert replacement != stuck
    assert not alive(stuck) and not alive(replacement)


async def test_a_worker_that_dies_is_reported_and_replaced() -> None:
    async with WorkerPool(limits()) as pool:
        dead = await pool.run(os.getpid)
        with pytest.raises(WorkerCrashed):
            await pool.run(crash)
        assert await pool.run(os.getpid) != dead


async def test_a_job_error_is_reported_and_the_worker_kept() -> None:
    async with WorkerPool(limits()) as pool:
        worker = await pool.run(os.getpid)
        with pytest.raises(JobFailed) as caught:
            await pool.run(fail)
        assert "parser" not in caught.value.message  # internals are logged, not shown
        with pytest.raises(JobRejected) as refused:
            await pool.run(refuse)
        assert refused.value.message == "This file is not a document."
        assert await pool.run(os.getpid) == worker


async def test_jobs_beyond_the_workers_wait_and_a_full_line_is_refused() -> None:
    async with WorkerPool(limits(timeout_seconds=0.5, max_queued=1)) as pool:
        busy = asyncio.create_task(pool.run(hang))
        await asyncio.sleep(0)  # it takes the only worker
        waiting = asyncio.create_task(pool.run(os.getpid))
        await asyncio.sleep(0)  # it waits in line
        with pytest.raises(PoolBusy):
            await pool.run(os.getpid)
        with pytest.raises(JobTimedOut):
            await busy
        assert await waiting != os.getpid()


async def test_workers_run_side_by_side_up_to_the_limit() -> None:
    async with WorkerPool(limits(workers=2)) as pool:
        pids = await asyncio.gather(*(pool.run(os.getpid) for _ in range(6)))
    assert len(set(pids)) == 2


async def test_shutdown_leaves_no_worker_processes() -> None:
    pool = WorkerPool(limits(workers=2))
    pids = set(await asyncio.gather(pool.run(os.getpid), pool.run(os.getpid)))
    running = asyncio.create_task(pool.run(hang))
    await asyncio.sleep(0)
    await pool.close()
    with pytest.raises(WorkerCrashed):
        await running
    assert pids and not any(alive(pid) for pid in pids)
    with pytest.raises(PoolClosed):
        await pool.run(os.getpid)
