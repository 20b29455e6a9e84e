"""A JSON body made of millions of tiny values is refused before it is parsed (parsing them would hold
the event loop for a second: orjson keeps the GIL), on the anonymous chat API and on webhooks alike."""

from __future__ import annotations

import pytest

from tests.emulators.fake_llm import FakeLLM
from tests.support.loop_watch import HEALTHZ_BUDGET_SECONDS, collector_as_botline_serve_sets_it, slowest_healthz_during
from tests.support.server import RunningServer
from tests.support.webchat import create_client, open_session, public

__all__ = ["collector_as_botline_serve_sets_it"]  # autouse

TINY_VALUES = b'{"prompt": {"role": "user", "content": [' + b",".join([b"{}"] * 6_000_000) + b"]}}"
"""18 MB, under the default 20 MB body cap."""


@pytest.mark.parametrize("shape", ["prompt", "webhook"])
async def test_millions_of_tiny_values_are_refused_unparsed_while_healthz_answers(
    server: RunningServer, fake_llm: FakeLLM, shape: str
) -> None:
    client_id = await create_client(server, fake_llm)
    if shape == "prompt":
        path = public(str((await open_session(server, client_id))["accessKey"]), "/prompt")
    else:
        _, saved = await server.call("PUT", f"/api/v1/web-chat-client/{client_id}/integrations", json={
            "integrationType": "Zapi", "integrations": {"zapiIntegration": {
                "instanceId": "instance", "instanceToken": "token"}}})
        path = saved["webhookUrl"].removeprefix(server.url)
    (status, answer), slowest = await slowest_healthz_during(server, server.call(
        "POST", path, data=TINY_VALUES, headers={"Content-Type": "application/json"}))
    assert status == 413 and "too many JSON values" in answer["message"]
    assert slowest < HEALTHZ_BUDGET_SECONDS
    assert fake_llm.requests == []
