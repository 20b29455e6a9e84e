"""Helpers for the fault tests: a `botline serve` child's config file, and a client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.conftest import UPSTREAM_KEY
from tests.emulators.fake_llm import FakeLLM
from tests.support.processes import BotlineProcess
from tests.support.server import ADMIN_KEY, RunningServer


def write_config(tmp_path: Path, storage_url: str, fake: FakeLLM, **sections: dict[str, Any]) -> Path:
    """A config file: `storage_url`, the admin key, no model retries, one gateway `main` on the fake
    LLM, plus `sections` (merged over those)."""
    config: dict[str, Any] = {
        "storage": {"url": storage_url},
        "auth": {"admin_keys": [ADMIN_KEY]},
        "llm": {"max_retries": 0},
        "gateways": [{"name": "main", "parameters": {
            "baseAddress": fake.base_url, "apiKey": UPSTREAM_KEY, "modelName": "fake-model"}}],
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@asynccontextmanager
async def client_of(process: BotlineProcess) -> AsyncIterator[RunningServer]:
    """The same test client the in-process server gives, pointed at a child process (its session
    sends the admin key by default)."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as http:
        yield RunningServer(url=process.url, http=http)
