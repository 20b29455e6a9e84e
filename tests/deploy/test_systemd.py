"""deploy/botline.service: the unit runs `botline serve` unprivileged and outlasts the shutdown grace."""

from __future__ import annotations

import shlex

from botline.config import Settings
from tests.deploy.files import seconds, systemd_unit


def test_the_unit_runs_botline_serve_with_its_config_as_an_unprivileged_user() -> None:
    service = systemd_unit()["Service"]
    (exec_start,) = service["ExecStart"]
    program, command, *options = shlex.split(exec_start)
    assert program.endswith("/bin/botline") and command == "serve"
    assert options[options.index("--config") + 1].startswith("/etc/botline/")
    assert service["User"] != ["root"]
    assert service["WorkingDirectory"] == service["ReadWritePaths"], "sqlite's ./data must be writable"


def test_systemctl_stop_waits_longer_than_the_shutdown_grace() -> None:
    service = systemd_unit()["Service"]
    assert service["KillSignal"] == ["SIGTERM"]
    (timeout,) = service["TimeoutStopSec"]
    assert seconds(timeout) > Settings().server.shutdown_grace_seconds


def test_the_unit_allows_many_open_streams() -> None:
    (limit,) = systemd_unit()["Service"]["LimitNOFILE"]
    assert int(limit) >= 10_000
