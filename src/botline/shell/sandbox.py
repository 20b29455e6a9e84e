"""Runs one shell command in a bubblewrap sandbox with hard limits, off the event loop (asyncio subprocess).

What the command gets (docs/decisions.md, "The bash tool's sandbox", has the threat model):
- new user, PID, network, IPC, UTS and cgroup namespaces (`--unshare-all`): no network at all (only a
  down loopback), no view of botline's or any other process, every capability dropped;
- a read-only /usr (programs filtered by the tool list), a private /proc, /dev and a small /tmp, and
  nothing else of the host: no /etc beyond the loader cache and alternatives, no /home, no /root, no data dir;
- one writable directory, /home/user: the shell user's files (or a turn's scratch directory);
- rlimits set before the sandbox starts (prlimit): CPU seconds, address space per process, processes
  (a fork bomb stops there), largest file written, open files; a wall-time limit after which the whole
  sandbox is killed (its PID namespace dies with its first process); stdout and stderr read up to a cap,
  past which the command is stopped.
When botline runs as root the sandbox runs as `sandbox_uid` (setpriv), because RLIMIT_NPROC does not
bind uid 0. `--as-pid-1`: bash itself is the namespace's first process. With bwrap's own init there,
the outer bwrap may exit before reaping it, leaving a zombie for the host's PID 1 to collect; zombies of
the sandbox uid count against RLIMIT_NPROC, so a busy server (or botline as a container's PID 1, which
reaps nothing) ran out of processes. When bash exits the kernel kills and reaps the whole namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from botline.domain.gateways import ToolExclusionMode
from botline.shell.settings import BashSettings

WORKDIR = "/home/user"
SHELL = "/usr/bin/bash"
PROGRAM_DIRS = (Path("/usr/local/bin"), Path("/usr/bin"), Path("/usr/sbin"))
MERGED_ROOT_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
ETC_FILES = ("/etc/ld.so.cache", "/etc/alternatives", "/etc/localtime", "/etc/mime.types", "/etc/magic")
"""The only host files of /etc the sandbox sees: enough for the dynamic loader, `awk` and `file`."""
READ_BYTES = 64 * 1024
REAP_SECONDS = 2.0
"""How long a killed sandbox gets to close its pipes before it is killed again."""
DIRECTORY_FD = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
KILLED_EXIT = -9
ENVIRONMENT = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": WORKDIR, "LANG": "C.UTF-8", "TERM": "dumb",
               "USER": "user"}
DEFAULT_TOOLS = (
    "awk", "base64", "basename", "bc", "cat", "cmp", "column", "comm", "cp", "csplit", "cut", "date", "diff",
    "dirname", "du", "env", "expand", "expr", "file", "find", "fmt", "fold", "grep", "gunzip", "gzip", "head",
    "iconv", "jq", "join", "ln", "ls", "md5sum", "mkdir", "mv", "nl", "od", "paste", "pdftotext", "printf",
    "python3", "readlink", "realpath", "rev", "rm", "rmdir", "sed", "seq", "sha1sum", "sha256sum", "sleep",
    "sort", "split", "stat", "tac", "tail", "tar", "tee", "touch", "tr", "true", "false", "uniq", "unzip",
    "wc", "xargs", "xxd", "zcat", "zip",
)
"""A WhiteList with no names allows these (those installed on the host): text and data work, no network tools."""


@dataclass(frozen=True)
class ToolPolicy:
    """Which installed programs exist inside the sandbox. The shell itself always does."""

    mode: ToolExclusionMode = ToolExclusionMode.WHITE_LIST
    names: tuple[str, ...] = ()

    @property
    def allowed(self) -> tuple[str, ...]:
        return self.names or DEFAULT_TOOLS


@dataclass
class CommandResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False
    output_capped: bool = False
    notes: list[str] = field(default_factory=list)


def find_program(name: str) -> Path | None:
    """The real file behind a program name (symlinks like awk -> /etc/alternatives/awk -> mawk resolved)."""
    for folder in PROGRAM_DIRS:
        candidate = folder / name
        if candidate.exists():
            return candidate.resolve()
    return None


class Sandbox:
    def __init__(self, settings: BashSettings) -> None:
        self._s = settings
        self._slots = asyncio.Semaphore(settings.max_concurrent)
        self.unavailable: str | None = "the bash sandbox has not been checked yet"
        """Why commands cannot run here (None when they can): said to whoever enables bash."""

    async def probe(self, base: Path) -> None:
        """Runs `true` in a real sandbox over a directory made in `base` (where users' files will be), and
        remembers why not when it fails: no bwrap, no user namespaces, or (as root) a path the sandbox user
        cannot traverse."""
        if not self._s.enabled:
            self.unavailable = "the bash tool is turned off on this server (shell.bash.enabled)"
            return
        missing = [tool for tool in (self._s.bwrap_path, "prlimit", *(["setpriv"] if os.geteuid() == 0 else []))
                   if shutil.which(tool) is None]
        if missing:
            self.unavailable = f"{', '.join(missing)} is not installed on this server (apt-get install bubblewrap)"
            return
        try:
            base.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=".probe-", dir=base) as folder:
                self._own(Path(folder))
                result = await self._run(Path(folder), "true", ToolPolicy(names=("true",)), None)
        except OSError as exc:  # a read-only filesystem (a container's root), a path nobody may create
            self.unavailable = f"the shell files directory {base} cannot be written ({exc.strerror or exc})"
            return
        if result.exit_code != 0:
            detail = result.stderr.decode("utf-8", "replace").strip()[:300] or f"exit code {result.exit_code}"
            self.unavailable = f"bubblewrap cannot create its sandbox on this server ({detail})"
            if "source path" in detail:
                self.unavailable += (f"; uid {self._s.sandbox_uid} must be able to traverse every directory "
                                     f"above {base.resolve()}")
            elif "proc" in detail or "Operation not permitted" in detail:
                self.unavailable += ("; in a container, user namespaces and a fresh /proc must be allowed "
                                     "(docs/deploy.md, \"Shell files and the bash tool\")")
            return
        self.unavailable = None

    def _own(self, folder: Path) -> None:
        if os.geteuid() == 0:
            os.chown(folder, self._s.sandbox_uid, self._s.sandbox_uid)

    @property
    def owner(self) -> tuple[int, int] | None:
        """Who must own the files the sandbox writes to (when botline is root): the sandbox user."""
        return (self._s.sandbox_uid, self._s.sandbox_uid) if os.geteuid() == 0 else None

    async def run(self, workdir: Path, command: str, policy: ToolPolicy, *,
                  read_only: Path | None = None) -> CommandResult:
        """`command` run by bash in `workdir` (mounted at /home/user); `read_only` appears at /home/user/files."""
        if self.unavailable:
            raise RuntimeError(self.unavailable)
        async with self._slots:
            return await self._run(workdir, command, policy, read_only)

    def command_line(self, workdir: int, command: str, policy: ToolPolicy, read_only: int | None) -> list[str]:
        """`workdir` and `read_only` are open directory descriptors: bwrap mounts what they point at, so the
        sandbox user needs no right on the path to it, and a path swapped after the check cannot redirect it."""
        s = self._s
        mb = 1024 * 1024
        line = ["prlimit", f"--cpu={s.cpu_seconds}", f"--as={s.memory_mb * mb}", f"--nproc={s.max_processes}",
                f"--fsize={s.max_file_mb * mb}", "--nofile=256", "--core=0", "--"]
        if os.geteuid() == 0:
            line += ["setpriv", f"--reuid={s.sandbox_uid}", f"--regid={s.sandbox_uid}", "--clear-groups", "--"]
        line += [s.bwrap_path, "--unshare-all", "--as-pid-1", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
                 "--hostname", "sandbox", "--ro-bind", "/usr", "/usr"]
        for name in MERGED_ROOT_LINKS:
            host = Path("/") / name
            if host.is_symlink():
                line += ["--symlink", os.readlink(host), f"/{name}"]
            elif host.is_dir():
                line += ["--ro-bind", str(host), f"/{name}"]
        line += self._program_mounts(policy)
        line += ["--proc", "/proc", "--dev", "/dev", "--size", str(s.max_file_mb * mb), "--tmpfs", "/tmp",
                 "--dir", "/etc"]
        for path in ETC_FILES:
            line += ["--ro-bind-try", path, path]
        line += ["--bind-fd", str(workdir), WORKDIR]
        if read_only is not None:
            line += ["--ro-bind-fd", str(read_only), f"{WORKDIR}/files"]
        line += ["--chdir", WORKDIR, "--", SHELL, "-c", command]
        return line

    @staticmethod
    def _program_mounts(policy: ToolPolicy) -> list[str]:
        mounts: list[str] = []
        if policy.mode is ToolExclusionMode.BLACK_LIST:
            for name in policy.names:
                for folder in PROGRAM_DIRS:
                    if (folder / name).exists():
                        mounts += ["--ro-bind", "/dev/null", str(folder / name)]
            return mounts
        for folder in PROGRAM_DIRS:
            if folder.is_dir():
                mounts += ["--tmpfs", str(folder)]
        for name in {*policy.allowed, "bash"}:
            real = find_program(name)
            if real is not None:
                mounts += ["--ro-bind", str(real), f"/usr/bin/{name}"]
        for folder in PROGRAM_DIRS:
            if folder.is_dir():
                mounts += ["--remount-ro", str(folder)]
        return mounts

    async def _run(self, workdir: Path, command: str, policy: ToolPolicy, read_only: Path | None) -> CommandResult:
        folders = [os.open(path, DIRECTORY_FD) for path in (workdir, read_only) if path is not None]
        info_read, info_write = os.pipe()
        os.set_blocking(info_read, False)
        try:
            line = self.command_line(folders[0], command, policy, folders[1] if read_only else None)
            process = await asyncio.create_subprocess_exec(
                *line[:-4], "--info-fd", str(info_write), *line[-4:],
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env=ENVIRONMENT, start_new_session=True, pass_fds=[*folders, info_write],
            )
        finally:
            for fd in (*folders, info_write):
                os.close(fd)
        try:
            return await self._collect(process, info_read)
        finally:
            os.close(info_read)

    async def _collect(self, process: asyncio.subprocess.Process, info: int) -> CommandResult:
        assert process.stdout is not None and process.stderr is not None
        cap = self._s.max_output_bytes
        outputs: list[bytearray] = [bytearray(), bytearray()]
        capped = asyncio.Event()

        async def drain(stream: asyncio.StreamReader, into: bytearray) -> None:
            while chunk := await stream.read(READ_BYTES):
                into += chunk[: cap + 1 - len(into)]
                if len(into) > cap:
                    capped.set()
                    return

        readers = asyncio.gather(drain(process.stdout, outputs[0]), drain(process.stderr, outputs[1]))
        readers.add_done_callback(lambda done: done.cancelled() or done.exception())
        stop: asyncio.Future[Any] = asyncio.ensure_future(capped.wait())
        waited: set[asyncio.Future[Any]] = {readers, stop}
        timed_out = False
        sandbox = _Child(info)
        try:
            done, _ = await asyncio.wait(waited, timeout=self._s.timeout_seconds,
                                         return_when=asyncio.FIRST_COMPLETED)
            timed_out = not done
        finally:
            stop.cancel()
            killed = timed_out or capped.is_set() or not readers.done()
            if killed:
                sandbox.kill(process.pid)
            readers.cancel()
            exit_code = await _reap(process, sandbox, killed=killed)
        result = CommandResult(exit_code=exit_code, stdout=bytes(outputs[0][:cap]), stderr=bytes(outputs[1][:cap]),
                               timed_out=timed_out, output_capped=capped.is_set())
        if timed_out:
            result.notes.append(f"The command ran longer than {self._s.timeout_seconds:g} s and was stopped.")
        if capped.is_set():
            result.notes.append(f"The command wrote more than {cap} bytes of output and was stopped; "
                                "write large results to a file instead.")
        return result


class _Child:
    """The sandbox's first process, as bwrap's `--info-fd` names it (read once, when it is there)."""

    def __init__(self, info: int) -> None:
        self._info = info
        self._text = b""
        self.pid: int | None = None

    def _read(self) -> int | None:
        if self.pid is None:
            with contextlib.suppress(OSError, ValueError):
                self._text += os.read(self._info, 4096)
                child = orjson.loads(self._text).get("child-pid")
                if isinstance(child, int) and child > 1:
                    self.pid = child
        return self.pid

    def kill(self, group: int) -> None:
        """The sandbox's first process (the kernel then kills its whole PID namespace), and the process
        group of prlimit/setpriv/bwrap. Killing bwrap alone is not enough: the parent-death signal does
        not always reach the sandbox, whose processes would keep the pipes open."""
        child = self._read()
        if child is not None:
            with contextlib.suppress(OSError):
                os.kill(child, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)


async def _reap(process: asyncio.subprocess.Process, sandbox: _Child, *, killed: bool) -> int:
    """The exit code. `process.wait()` also waits for the pipes to close, so they are drained meanwhile
    (a sandbox still writing cannot block it), and a killed sandbox that outlives the kill (bwrap had
    not yet named its child) is killed again until it is gone."""
    assert process.stdout is not None and process.stderr is not None

    async def discard(stream: asyncio.StreamReader) -> None:
        while await stream.read(READ_BYTES):
            pass

    sinks = asyncio.gather(discard(process.stdout), discard(process.stderr))
    sinks.add_done_callback(lambda done: done.cancelled() or done.exception())
    try:
        while True:
            try:
                async with asyncio.timeout(REAP_SECONDS if killed else None):
                    return await process.wait()
            except TimeoutError:
                sandbox.kill(process.pid)
    finally:
        sinks.cancel()

