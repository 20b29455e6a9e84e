"""kill -9 of a real `botline serve` in the middle of a job, then a restart: every item ends in exactly
one final state, and only the items that were running at the kill were asked again."""

from __future__ import annotations

import signal
from pathlib import Path

import aiohttp
import orjson

from tests.batch.helpers import BatchApi, Classifier, numbered
from tests.conftest import UPSTREAM_KEY
from tests.emulators.fake_llm import FakeLLM
from tests.support.processes import botline_process
from tests.support.server import ADMIN_KEY, free_port

ITEMS = 40
CONCURRENCY = 4


def write_config(tmp_path: Path, fake: FakeLLM) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"storage:\n  url: sqlite:///{tmp_path / 'botline.db'}\n"
        f"auth:\n  admin_keys: [{ADMIN_KEY}]\n"
        f"batch:\n  poll_seconds: 0.05\n  lease_seconds: 1\n  max_concurrent_per_job: {CONCURRENCY}\n"
        f"gateways:\n  - name: main\n    parameters:\n      baseAddress: {fake.base_url}\n"
        f"      apiKey: {UPSTREAM_KEY}\n      modelName: fake-model\n"
    )
    return config


async def test_a_kill_mid_job_and_a_restart_record_every_item_once(tmp_path: Path) -> None:
    classifier = Classifier(delay=0.05)
    async with FakeLLM(api_key=UPSTREAM_KEY, default_reply=classifier) as fake, aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as http:
        config = write_config(tmp_path, fake)
        port = free_port()
        url = f"http://127.0.0.1:{port}"

        async def call(method: str, path: str, **kwargs: object) -> tuple[int, object]:
            async with http.request(method, url + path, **kwargs) as response:  # type: ignore[arg-type]
                text = await response.text()
                try:
                    return response.status, orjson.loads(text)
                except orjson.JSONDecodeError:
                    return response.status, text

        api = BatchApi(call)
        async with botline_process(config, port) as first:
            await api.setup("main")
            await api.load(numbered(ITEMS))
            await fake.wait_for_requests(12, timeout=20)
            first.process.send_signal(signal.SIGKILL)
            await first.process.wait()
        asked_before_restart = sum(classifier.calls.values())

        async with botline_process(config, port):
            summary = await api.wait(lambda s: s["finished"] == ITEMS)
            assert (summary["total"], summary["pending"], summary["running"]) == (ITEMS, 0, 0)
            status, text = await call("GET", api.base + "/export.jsonl")
        assert status == 200 and isinstance(text, str)
        lines = [orjson.loads(line) for line in text.splitlines()]
        assert [line["input"] for line in lines] == numbered(ITEMS)
        assert {line["state"] for line in lines} == {"Finished"}
        assert set(classifier.calls) == set(numbered(ITEMS))
        asked_twice = [text for text, calls in classifier.calls.items() if calls > 1]
        assert max(classifier.calls.values()) <= 2
        assert len(asked_twice) <= CONCURRENCY  # only what was running when the process died
        assert sum(classifier.calls.values()) - ITEMS <= CONCURRENCY
        assert asked_before_restart >= 12
