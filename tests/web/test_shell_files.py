"""A file the model's bash tool wrote under out/, in the web chat: a download chip under the answer whose
public address (another origin than the chat page, as behind a proxy) saves the file in Chromium."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from botline.api.state import SERVICES
from tests.conftest import create_gateway
from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.support.server import RunningServer
from tests.web.conftest import CLIENT_DEFAULTS, SESSION_LOOP, answers, send

pytestmark = SESSION_LOOP

CSV = b"region,total\nnorth,10\n"


@pytest.fixture
def settings_overrides() -> Iterator[dict[str, Any]]:
    """Shell files in a folder the sandbox user may traverse (the tests may run as root)."""
    folder = Path(tempfile.mkdtemp(prefix="botline-web-shell-", dir="/tmp"))
    folder.chmod(0o711)
    yield {"shell": {"local_path": str(folder / "shell")}}
    shutil.rmtree(folder, ignore_errors=True)


async def test_a_file_the_bash_tool_wrote_is_a_chip_that_downloads_it(
    page: Page, server: RunningServer, fake_llm: FakeLLM
) -> None:
    assert server.app is not None
    if server.app[SERVICES].sandbox.unavailable:
        pytest.skip(f"no sandbox on this host: {server.app[SERVICES].sandbox.unavailable}")
    gateway_id = await create_gateway(server, fake_llm, enableBash=True, bashOptions={"allowDataPersistence": True})
    status, client = await server.call("POST", "/api/v1/web-chat-client", json={
        "name": "Website", "aiGatewayId": gateway_id, "limitingParameters": {}, "clientParameters": CLIENT_DEFAULTS})
    assert status == 200, client
    status, session = await server.call("POST", f"/api/v1/web-chat-client/{client['id']}/sessions",
                                        json={"tag": "alice"})
    assert status == 200, session
    command = "mkdir -p out && printf 'region,total\\nnorth,10\\n' > out/report.csv"
    fake_llm.script(Reply(tool_calls=[ToolCall("bash", {"command": command})]), Reply(text="Here is the report."))
    await page.goto(session["talkUrl"])
    await send(page, "report please")
    await expect(answers(page)).to_have_text("Here is the report.")
    chip = page.get_by_role("link", name="report.csv")
    await expect(chip).to_be_visible()
    assert "/api/v1/public/ext-res/file/" in str(await chip.get_attribute("href"))
    async with page.expect_download() as download_info:
        await chip.click()
    download = await download_info.value
    path = await download.path()
    assert download.suggested_filename == "report.csv" and path.read_bytes() == CSV
