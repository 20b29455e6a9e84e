"""Schemathesis over GET /openapi.json against a real server: no generated request, valid or not,
gets an undocumented 5xx, and every answer matches its documented schema.

Each operation is tried with random path values (mostly 404s) and with the ids of real objects made
fresh for it (a gateway on the fake LLM, a chat client with a Z-API integration, a live session, a
second account, a spare API key), so handlers get past their lookups and into the body.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.specs.openapi.checks import response_schema_conformance

from botline.accounts import create_account
from botline.app import STORE
from tests.emulators.fake_llm import FakeLLM
from tests.support.server import RunningServer, free_port
from tests.support.webchat import client_body

EXAMPLES = 4
"""Per operation, generation mode and path variant (16 requests per operation): about 30 s
on a quiet machine, several times that on a loaded one (hypothesis's generation is most of the time)."""
TIME_LIMIT = 600
"""The suite's 120 s per test guards against hangs; this one test legitimately runs long when the
machine is slow (a CI run on a loaded machine took over 120 s at 6 examples), and the fuzzing's
findings do not depend on how long it takes."""
DEAD = f"http://127.0.0.1:{free_port()}"
"""Provider APIs point at a closed loopback port: an integration's registration fails fast, offline."""


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Every operation gets a fresh spare key, and the fuzzing creates more: lift the per-account cap.
    return {"providers": {"telegram": {"api_url": DEAD, "mode": "webhook"}, "zapi": {"api_url": DEAD},
                          "kapso": {"api_url": DEAD}},
            "auth": {"max_keys_per_account": 100_000}}


@dataclass(frozen=True)
class Objects:
    """Ids of real objects, by the path parameter names of the document."""

    gateway: str
    client: str
    access_key: str
    session: str
    account: str
    key: str
    webhook_token: str

    def for_path(self, path: str) -> dict[str, str]:
        """Real values for the path parameters of `path` (the meaning of `{id}` depends on the path)."""
        owner = self.gateway if path.startswith("/api/v1/ai-gateways/") else self.client
        return {"id": owner, "accessKey": self.access_key, "sessionId": self.session, "accountId": self.account,
                "keyId": self.key, "clientId": self.client, "integrationType": "Zapi", "name": "Zapi",
                "token": self.webhook_token}


def make_objects(server: RunningServer, http: requests.Session, fake: FakeLLM, account: str, label: str) -> Objects:
    """Fresh objects for one operation (the fuzzing may delete or change the previous ones)."""

    def call(method: str, path: str, body: Any = None) -> Any:
        response = http.request(method, server.url + path, json=body)
        assert response.ok, (path, response.text)
        return response.json()

    gateway = call("POST", "/api/v1/ai-gateways", {"name": label, "parameters": {
        "baseAddress": fake.base_url, "apiKey": "sk-upstream", "modelName": "fake-model"}})["aiGatewayId"]
    client = call("POST", "/api/v1/web-chat-client", client_body(gateway))["id"]
    saved = call("PUT", f"/api/v1/web-chat-client/{client}/integrations", {
        "integrationType": "Zapi", "integrations": {"zapiIntegration": {"instanceId": "i", "instanceToken": "t"}}})
    session = call("POST", f"/api/v1/web-chat-client/{client}/sessions", {"tag": "fuzz"})
    call("POST", "/api/v1/accounts/api-key", {"label": label})
    spare = next(k["id"] for k in call("GET", "/api/v1/accounts/api-key")["apiKeys"] if k["label"] == label)
    return Objects(gateway=gateway, client=client, access_key=session["accessKey"], session=session["sessionId"],
                   account=account, key=spare, webhook_token=saved["webhookUrl"].rsplit("/", 1)[1])


def fuzz(server: RunningServer, fake: FakeLLM, account: str) -> list[str]:
    """Runs every operation; the failures, one line each."""
    document = requests.get(server.url + "/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(document)
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {server.admin_key}"

    def no_undocumented_server_error(ctx: CheckContext, response: Response, case: Case) -> bool | None:
        documented = document["paths"][case.operation.path][case.method.lower()]["responses"]
        if response.status_code >= 500 and str(response.status_code) not in documented:
            raise AssertionError(f"{response.status_code}: {response.text[:200]}")
        return None

    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        objects = make_objects(server, http, fake, account, label=operation.label)
        strategy = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
            operation.as_strategy(GenerationMode.POSITIVE, path_parameters=objects.for_path(operation.path)),
            operation.as_strategy(GenerationMode.NEGATIVE, path_parameters=objects.for_path(operation.path)),
        )

        @settings(max_examples=EXAMPLES * 4, derandomize=True, database=None, deadline=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def run(case: Case) -> None:
            case.call_and_validate(base_url=server.url, session=http, timeout=10,
                                   checks=[no_undocumented_server_error, response_schema_conformance])

        try:
            run()
        except Exception as exc:  # one line per failing operation; the assertion says which request
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
    return failures


@pytest.mark.timeout(TIME_LIMIT)
async def test_no_generated_request_gets_a_server_error(server: RunningServer, fake_llm: FakeLLM) -> None:
    assert server.app is not None
    target = await create_account(server.app[STORE], name="Fuzzed account")
    failures = await asyncio.to_thread(fuzz, server, fake_llm, target.record.account_id)
    assert not failures, "\n\n".join(failures)
