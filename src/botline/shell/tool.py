"""The model's `bash` tool (gateway `enableBash`, `bashOptions`) and the TurnExtension that offers it.

The tool runs in the shell user's files (the caller's external user id, so a user's files follow them
across web chat and channels), or, with `allowDataPersistence: false`, in a scratch directory made for
the turn and removed when it ends (the user's files are then readable at /home/user/files). Offered only
when the turn has a user and the sandbox works on this server (the gateway save refused it otherwise).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from botline.domain.gateways import BashOptions, Gateway
from botline.gateway.caller import Caller
from botline.gateway.extensions import Contribution
from botline.gateway.tools import Tool, ToolFailure, ToolSpec, function_spec
from botline.shell.files import ShellFiles
from botline.shell.local import LocalFileStore
from botline.shell.sandbox import WORKDIR, CommandResult, Sandbox, ToolPolicy
from botline.shell.storage import UserRoot

NAME = "bash"
COMMAND_MAX = 16 * 1024
INSTRUCTIONS = (
    "You have a bash tool: a sandboxed Linux shell with no network, in the user's own directory "
    f"({WORKDIR}). Files the user uploaded are there; files you write there can be given back to the user."
)


def policy_of(options: BashOptions | None) -> ToolPolicy:
    options = options or BashOptions()
    return ToolPolicy(options.tool_exclusion_mode, tuple(options.tool_list))


def render(result: CommandResult) -> str:
    """What the model reads: exit code, stdout, stderr (each cut at the cap) and why it was stopped."""
    parts = [f"exit code: {result.exit_code}"]
    if result.stdout:
        parts.append("stdout:\n" + result.stdout.decode("utf-8", "replace"))
    if result.stderr:
        parts.append("stderr:\n" + result.stderr.decode("utf-8", "replace"))
    parts.extend(result.notes)
    return "\n".join(parts)


class BashTool(Tool):
    name = NAME

    def __init__(self, files: ShellFiles, disk: LocalFileStore, sandbox: Sandbox, root: UserRoot,
                 options: BashOptions | None) -> None:
        self._files = files
        self._disk = disk
        self._sandbox = sandbox
        self._root = root
        self._policy = policy_of(options)
        self._persist = (options or BashOptions()).allow_data_persistence
        self._scratch: Path | None = None

    def spec(self) -> ToolSpec:
        where = "the user's files" if self._persist else "a scratch directory (the user's files: ./files, read-only)"
        return function_spec(self.name, (
            f"Runs a bash command in a sandbox without network, in {WORKDIR} ({where}). Returns the exit code, "
            f"stdout and stderr (each cut at a few KB). Commands are killed after a short time limit."
        ), {"type": "object", "properties": {"command": {"type": "string", "description": "the bash command"}},
            "required": ["command"]})

    async def run(self, arguments: dict[str, Any], caller: Caller) -> str:
        command = arguments.get("command")
        if not isinstance(command, str) or not command.strip():
            raise ToolFailure("command must be a non-empty string.")
        if len(command) > COMMAND_MAX:
            raise ToolFailure(f"command may have at most {COMMAND_MAX} characters.")
        if self._persist:
            workdir, read_only = await asyncio.to_thread(self._disk.files_dir, self._root), None
        else:
            if self._scratch is None:
                self._scratch = await asyncio.to_thread(self._disk.scratch_dir, self._root)
            workdir, read_only = self._scratch, await asyncio.to_thread(self._disk.files_dir, self._root)
        result = render(await self._sandbox.run(workdir, command, self._policy, read_only=read_only))
        room = await self._files.remaining(self._root)
        if room <= 0:
            result += "\nThe user's storage is full: delete files before writing more."
        return result

    async def close(self) -> None:
        """Ends the turn: the scratch directory (if any) goes."""
        if self._scratch is not None:
            await asyncio.to_thread(shutil.rmtree, self._scratch, True)
            self._scratch = None


class BashExtension:
    def __init__(self, files: ShellFiles, disk: LocalFileStore | None, sandbox: Sandbox) -> None:
        self._files = files
        self._disk = disk
        self._sandbox = sandbox

    async def contribute(self, gateway: Gateway, caller: Caller) -> Contribution:
        params = gateway.parameters
        if not params.enable_bash or not caller.external_user_id or self._disk is None or self._sandbox.unavailable:
            return Contribution()
        tool = BashTool(self._files, self._disk, self._sandbox, UserRoot(gateway.account_id, caller.external_user_id),
                        params.bash_options)
        return Contribution(instructions=[INSTRUCTIONS], tools=[tool], cleanups=[tool.close])
