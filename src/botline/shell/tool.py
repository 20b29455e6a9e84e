"""The model's `bash` tool (gateway `enableBash`, `bashOptions`) and the TurnExtension that offers it.

The tool runs in the shell user's files (the caller's external user id, so a user's files follow them
across web chat and channels), or, with `allowDataPersistence: false`, in a scratch directory made for
the turn and removed when it ends (the user's files are then readable at /home/user/files). Where the
files live (local disk or S3) is the workspace's business (workspace.py). Offered only when the turn
has a user and the sandbox works on this server (the gateway save refused it otherwise).

Files the model writes under `out/` during a command (new or changed) are given to the person with
the answer: on the web chat a download chip (the file's public address when it is one of the user's
stored files, else the bytes), on Telegram and WhatsApp a document (media/outbound.py, engine/media_out.py).
"""

from __future__ import annotations

import asyncio
import mimetypes
from dataclasses import dataclass
from typing import Any

from botline.domain.clock import Clock
from botline.domain.gateways import BashOptions, Gateway
from botline.gateway.caller import Caller, CallSource
from botline.gateway.extensions import Contribution
from botline.gateway.tools import MEDIA_AUDIENCES, Tool, ToolFailure, ToolReply, ToolSpec, function_spec
from botline.media import OutboundMedia
from botline.media.outbound import MAX_ATTACHMENTS, safe_filename
from botline.shell.files import ShellFiles
from botline.shell.paths import InvalidPath, ShellPath
from botline.shell.sandbox import WORKDIR, CommandResult, Sandbox, ToolPolicy
from botline.shell.storage import UserRoot
from botline.shell.workspace import Mounts, Workspace, WorkspaceError, Workspaces, local_tree, read_regular

NAME = "bash"
COMMAND_MAX = 16 * 1024
OUT_DIR = "out"
"""Files written under `out/` in the working directory are given to the person."""


def instructions(persist: bool) -> str:
    where = ("Files the user uploaded are there" if persist
             else "The user's uploaded files are in ./files (read-only); what you write is gone after this turn")
    return (f"You have a bash tool: a sandboxed Linux shell with no network, working in {WORKDIR}. {where}. "
            f"To give the user a file, write it under {WORKDIR}/{OUT_DIR}/ (for example {OUT_DIR}/report.csv): "
            "it is sent to them with your answer.")


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


@dataclass(frozen=True)
class Delivery:
    """How files under `out/` reach the person: `base_url` for public addresses, `max_bytes` for files
    sent as bytes (the same cap as a protocol function's files, security.egress.tool_media_max_bytes)."""

    base_url: str
    max_bytes: int
    clock: Clock


class BashTool(Tool):
    name = NAME

    def __init__(self, files: ShellFiles, workspace: Workspace, sandbox: Sandbox, root: UserRoot,
                 options: BashOptions | None, delivery: Delivery) -> None:
        self._files = files
        self._workspace = workspace
        self._sandbox = sandbox
        self._root = root
        self._policy = policy_of(options)
        self._persist = (options or BashOptions()).allow_data_persistence
        self._delivery = delivery
        self._offered: set[str] = set()
        """Paths already given to the person this turn (each file goes once)."""

    def spec(self) -> ToolSpec:
        where = "the user's files" if self._persist else "a scratch directory (the user's files: ./files, read-only)"
        return function_spec(self.name, (
            f"Runs a bash command in a sandbox without network, in {WORKDIR} ({where}). Returns the exit code, "
            f"stdout and stderr (each cut at a few KB). Commands are killed after a short time limit. Files "
            f"written under {OUT_DIR}/ are sent to the user."
        ), {"type": "object", "properties": {"command": {"type": "string", "description": "the bash command"}},
            "required": ["command"]})

    async def run(self, arguments: dict[str, Any], caller: Caller) -> str | ToolReply:
        command = arguments.get("command")
        if not isinstance(command, str) or not command.strip():
            raise ToolFailure("command must be a non-empty string.")
        if len(command) > COMMAND_MAX:
            raise ToolFailure(f"command may have at most {COMMAND_MAX} characters.")
        limit = self._files.settings.max_entries
        try:
            async with self._workspace.command() as mounts:
                before = await asyncio.to_thread(local_tree, mounts.workdir, limit=limit, start=(OUT_DIR,))
                result = await self._sandbox.run(mounts.workdir, command, self._policy, read_only=mounts.read_only)
                after = await asyncio.to_thread(local_tree, mounts.workdir, limit=limit, start=(OUT_DIR,))
        except WorkspaceError as exc:
            raise ToolFailure(str(exc)) from None
        text = "\n".join([render(result), *mounts.notes])
        if await self._files.remaining(self._root) <= 0:
            text += "\nThe user's storage is full: delete files before writing more."
        produced = sorted(key for key, signature in after.files.items()
                          if before.files.get(key) != signature and key not in self._offered)
        if not produced:
            return text
        return await self._offer(text, mounts, produced, caller)

    async def _offer(self, text: str, mounts: Mounts, produced: list[str], caller: Caller) -> str | ToolReply:
        """The files under out/ the command made, for the person; the model is told which went and which not."""
        if caller.call_source not in MEDIA_AUDIENCES:
            return f"{text}\nFiles in {OUT_DIR}/ cannot be shown in this conversation: {', '.join(produced)}."
        room = MAX_ATTACHMENTS - len(self._offered)
        sent: list[OutboundMedia] = []
        left: list[str] = []
        for key in produced:
            try:
                path = ShellPath.parse(key)
            except InvalidPath:  # a name no storage holds (a backslash, a control character)
                left.append(key)
                continue
            media = await self._media(mounts, path, caller) if len(sent) < room else None
            if media is None:
                left.append(key)
                continue
            sent.append(media)
            self._offered.add(key)
        if left:
            text += (f"\nNot sent (larger than {self._delivery.max_bytes} bytes, more than {MAX_ATTACHMENTS} "
                     f"files in one turn, or a name with a backslash or control character): {', '.join(left)}.")
        if not sent:
            return text
        names = ", ".join(f"{m.filename} ({m.content_type})" for m in sent)
        return ToolReply(f"{text}\nSent to the user with your answer: {names}; do not repeat or link them.", sent)

    async def _media(self, mounts: Mounts, path: ShellPath, caller: Caller) -> OutboundMedia | None:
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        filename = safe_filename(path.name, content_type, "file")
        if caller.call_source is CallSource.WEB_CHAT and mounts.stored:
            url = self._files.public_url(self._delivery.base_url, self._root, path, self._delivery.clock.now())
            return OutboundMedia(data=b"", content_type=content_type, filename=filename, url=url)
        data = await asyncio.to_thread(read_regular, mounts.workdir, path, self._delivery.max_bytes)
        if data is None:
            return None
        return OutboundMedia(data=data, content_type=content_type, filename=filename)

    async def close(self) -> None:
        """Ends the turn: scratch space (and a copy of S3 files) goes."""
        await self._workspace.close()


class BashExtension:
    def __init__(self, files: ShellFiles, workspaces: Workspaces, sandbox: Sandbox, delivery: Delivery) -> None:
        self._files = files
        self._workspaces = workspaces
        self._sandbox = sandbox
        self._delivery = delivery

    async def contribute(self, gateway: Gateway, caller: Caller) -> Contribution:
        params = gateway.parameters
        if not params.enable_bash or not caller.external_user_id or self._sandbox.unavailable:
            return Contribution()
        options = params.bash_options or BashOptions()
        root = UserRoot(gateway.account_id, caller.external_user_id)
        tool = BashTool(self._files, self._workspaces.open(root, options.allow_data_persistence), self._sandbox,
                        root, options, self._delivery)
        return Contribution(instructions=[instructions(options.allow_data_persistence)], tools=[tool],
                            cleanups=[tool.close])
