"""The bubblewrap sandbox itself, with real commands: what a hostile command can and cannot reach or exhaust."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from botline.domain.gateways import ToolExclusionMode
from botline.shell.sandbox import Sandbox, ToolPolicy
from botline.shell.settings import BashSettings

SETTINGS = BashSettings(timeout_seconds=3, cpu_seconds=2, max_file_mb=2, max_output_bytes=4096, max_processes=16)
EVERYTHING = ToolPolicy(ToolExclusionMode.BLACK_LIST, ())


@pytest.fixture
async def sandbox(traversable: Path) -> Sandbox:
    box = Sandbox(SETTINGS)
    await box.probe(traversable)
    if box.unavailable:
        pytest.skip(f"no sandbox on this host: {box.unavailable}")
    return box


@pytest.fixture
def home(traversable: Path, sandbox: Sandbox) -> Path:
    folder = traversable / "home"
    folder.mkdir()
    if sandbox.owner:
        os.chown(folder, *sandbox.owner)
    return folder


async def run(sandbox: Sandbox, home: Path, command: str, policy: ToolPolicy = EVERYTHING) -> tuple[int, str, str]:
    result = await sandbox.run(home, command, policy)
    return result.exit_code, result.stdout.decode(), result.stderr.decode() + " ".join(result.notes)


async def test_the_host_filesystem_is_not_there(sandbox: Sandbox, home: Path, tmp_path: Path) -> None:
    (tmp_path / "other-user.txt").write_text("private")
    _code, out, err = await run(sandbox, home, "cat /etc/shadow /etc/passwd; ls /; ls /home; "
                                              f"cat {tmp_path}/other-user.txt; ls /root /work /data")
    assert "private" not in out and "root:" not in out
    assert {"usr", "proc", "tmp", "user"} <= set(out.split())
    assert not {"root", "work", "var", "opt", "srv", "mnt", "data"} & set(out.split())
    assert "No such file" in err


async def test_the_system_is_read_only_and_the_home_writable(sandbox: Sandbox, home: Path) -> None:
    _code, out, err = await run(sandbox, home, "echo x > /usr/evil; touch /etc/evil; echo ok > made.txt; cat made.txt")
    assert out.strip() == "ok" and "Read-only file system" in err
    assert (home / "made.txt").read_text() == "ok\n"


async def test_botlines_processes_are_invisible(sandbox: Sandbox, home: Path) -> None:
    _code, out, _ = await run(sandbox, home, "for p in /proc/[0-9]*; do cat $p/cmdline | tr '\\0' ' '; echo; done")
    assert "python" not in out and "pytest" not in out
    assert len([line for line in out.splitlines() if line.strip()]) <= 4  # bwrap, bash, the loop


async def test_there_is_no_network(sandbox: Sandbox, home: Path) -> None:
    _code, out, _err = await run(sandbox, home, (
        "python3 -c \"import socket\nfor host in ('1.1.1.1', '127.0.0.1'):\n"
        "  try:\n    socket.create_connection((host, 53), timeout=1); print('connected', host)\n"
        "  except OSError as e: print('refused', host, e.errno)\""))
    assert "connected" not in out and out.count("refused") == 2


async def test_a_fork_bomb_is_contained_and_stopped(sandbox: Sandbox, home: Path) -> None:
    _code, _out, err = await run(sandbox, home, ":(){ :|:& };:; sleep 1; echo survived")
    assert "Resource temporarily unavailable" in err or "longer than" in err


async def test_a_huge_write_stops_at_the_file_size_limit(sandbox: Sandbox, home: Path) -> None:
    _code, _out, err = await run(sandbox, home, "head -c 10G /dev/zero > big; ls -l big")
    assert (home / "big").stat().st_size <= SETTINGS.max_file_mb * 1024 * 1024
    assert "File size limit exceeded" in err


async def test_an_endless_loop_is_killed_at_the_time_limit(sandbox: Sandbox, home: Path) -> None:
    code, _, err = await run(sandbox, home, "while :; do :; done")
    assert code != 0 and ("longer than 3 s" in err or code in (-9, 137, 152))


async def test_endless_output_is_cut_and_the_command_stopped(sandbox: Sandbox, home: Path) -> None:
    result = await sandbox.run(home, "yes", EVERYTHING)
    assert len(result.stdout) == SETTINGS.max_output_bytes and result.output_capped and not result.timed_out


async def test_a_white_list_leaves_only_its_programs_and_bash(sandbox: Sandbox, home: Path) -> None:
    policy = ToolPolicy(ToolExclusionMode.WHITE_LIST, ("wc", "ls"))
    code, out, err = await run(sandbox, home, "ls /usr/bin; cat /etc/hostname", policy)
    assert sorted(out.split()) == ["bash", "ls", "wc"] and "cat: command not found" in err
    code, out, err = await run(sandbox, home, "/usr/lib/x86_64-linux-gnu/../../bin/cat /dev/null", policy)
    assert code != 0


async def test_a_black_list_removes_its_programs(sandbox: Sandbox, home: Path) -> None:
    _code, out, err = await run(sandbox, home, "echo hi | wc -c; echo hi | /usr/bin/wc -c",
                               ToolPolicy(ToolExclusionMode.BLACK_LIST, ("wc",)))
    assert out == "" and "Permission denied" in err
