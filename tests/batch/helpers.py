"""What the batch tests share: a fake model that classifies inputs, and a client of the batch API."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson

from tests.emulators.fake_llm import Reply

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}, "parity": {"enum": ["even", "odd"]}},
          "required": ["n", "parity"], "additionalProperties": False}
WAIT = 30.0
POLL = 0.05

Call = Callable[..., Awaitable[tuple[int, Any]]]


def user_input(body: dict[str, Any]) -> str:
    """The item's input: the first user message of the turn (a retry appends more after it)."""
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


class Classifier:
    """A model that answers each input `{"n": N}` with its parity, and counts its calls per input."""

    def __init__(self, confidence: float = 0.9, delay: float = 0.0) -> None:
        self.calls: Counter[str] = Counter()
        self.confidence = confidence
        self.delay = delay
        self.broken = False
        """While True, answers are not JSON."""

    def __call__(self, body: dict[str, Any]) -> Reply:
        text = user_input(body)
        self.calls[text] += 1
        if self.broken:
            return Reply(text="Sure! The parity is probably even.")
        n = orjson.loads(text)["n"]
        result = {"n": n, "parity": "even" if n % 2 == 0 else "odd"}
        return Reply(text=orjson.dumps({"result": result, "confidence": self.confidence}).decode(),
                     prompt_tokens=1000, completion_tokens=500, delay=self.delay)


def jsonl(inputs: list[str]) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("items", ("\n".join(inputs) + "\n").encode(), filename="items.jsonl",
                   content_type="application/jsonl")
    return form


def numbered(count: int) -> list[str]:
    return [orjson.dumps({"n": n}).decode() for n in range(count)]


class BatchApi:
    """A workflow and a job, through the HTTP API of one server (`call` like RunningServer.call)."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.workflow = ""
        self.job = ""

    @property
    def base(self) -> str:
        return f"/api/v1/batch/workflows/{self.workflow}/jobs/{self.job}"

    async def setup(self, gateway: str, **workflow: Any) -> None:
        options = {"instruction": "Give the parity of n.", "resultSchema": SCHEMA, **workflow.pop("options", {})}
        status, body = await self.call("POST", "/api/v1/batch/workflows",
                                       json={"modelName": gateway, "options": options, **workflow})
        assert status == 200, body
        self.workflow = body["id"]
        status, body = await self.call("POST", f"/api/v1/batch/workflows/{self.workflow}/jobs",
                                       json={"title": "test job"})
        assert status == 200, body
        self.job = body["id"]

    async def load(self, inputs: list[str]) -> dict[str, int]:
        status, body = await self.call("POST", self.base + "/items", data=jsonl(inputs))
        assert status == 200, body
        return dict(body)

    async def view(self) -> dict[str, Any]:
        status, body = await self.call("GET", self.base)
        assert status == 200, body
        return dict(body)

    async def wait(self, check: Callable[[dict[str, Any]], bool], timeout: float = WAIT) -> dict[str, Any]:
        """Polls the job view (the API a user watches) until `check(summary)` holds."""
        deadline = time.monotonic() + timeout
        while True:
            summary = (await self.view())["summary"]
            if check(summary):
                return summary
            assert time.monotonic() < deadline, summary
            await asyncio.sleep(POLL)

    async def items(self, **query: Any) -> list[dict[str, Any]]:
        status, body = await self.call("GET", self.base + "/items", params={"take": 1000, **query})
        assert status == 200, body
        return list(body)
