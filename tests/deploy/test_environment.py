"""Environment variables and config files given to botline by compose, Kubernetes, the image and systemd.

Every BOTLINE_* name must set a real config key (pydantic-settings ignores unknown top-level names,
so a typo would be silently dropped); every other variable must be read by the config file through
${...}; and each deployment's config file must load through botline's own loader with its
environment, giving the values the deployment relies on.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from botline.config import CONFIG_FILE_ENV, Settings, load_settings
from tests.deploy.files import (
    COMPOSE_SAMPLE_ENV,
    DEPLOY,
    botline_services,
    compose,
    compose_environment,
    config_key,
    configmap_config,
    dockerfile_environment,
    is_botline_variable,
    k8s_environment,
    systemd_environment,
)

SOURCES = {
    "compose": compose_environment(botline_services()["botline-1"]),
    "kubernetes": k8s_environment(),
    "Dockerfile": dockerfile_environment(),
    "systemd": systemd_environment(),
}
BOTLINE_NAMES = sorted((source, name) for source, env in SOURCES.items() for name in env if name.startswith("BOTLINE_"))


@pytest.mark.parametrize(("source", "name"), BOTLINE_NAMES, ids=[f"{s}:{n}" for s, n in BOTLINE_NAMES])
def test_every_botline_variable_sets_a_config_key(source: str, name: str) -> None:
    assert is_botline_variable(name), f"{source} sets {name}, which is no config key"


def test_the_key_walk_agrees_with_pydantic_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTLINE_AUTH__ADMIN_KEYS", '["sk-a", "sk-b"]')
    monkeypatch.setenv("BOTLINE_SERVER__SHUTDOWN_GRACE_SECONDS", "12")
    settings = Settings()
    assert [k.get_secret_value() for k in settings.auth.admin_keys] == ["sk-a", "sk-b"]
    assert settings.server.shutdown_grace_seconds == 12
    assert config_key("BOTLINE_AUTH__ADMIN_KEYS") == "auth.admin_keys"
    assert config_key("BOTLINE_SERVER__PROT") is None and config_key("BOTLINE_SERVERS__PORT") is None


def _config_file(source: str) -> str:
    if source == "compose":
        return (DEPLOY / "compose" / "botline.yaml").read_text(encoding="utf-8")
    return configmap_config()


@pytest.mark.parametrize("source", ["compose", "kubernetes"])
def test_every_other_variable_is_read_by_the_config_file(source: str) -> None:
    others = {name for name in SOURCES[source] if not name.startswith("BOTLINE_")}
    unread = {name for name in others if "${" + name not in _config_file(source)}
    assert not unread, f"{source} passes {unread} but its config file never reads them"


def _load(source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The config file loaded as the container would: its environment set, the file at BOTLINE_CONFIG."""
    env = SOURCES[source]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert env[CONFIG_FILE_ENV] == "/etc/botline/config.yaml"
    path = tmp_path / "config.yaml"
    path.write_text(_config_file(source), encoding="utf-8")
    return load_settings(path)


def test_compose_config_loads_with_the_compose_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _load("compose", tmp_path, monkeypatch)
    assert settings.server.host == "0.0.0.0"
    assert settings.storage.url == "redis://redis:6379/0" and "redis" in compose()["services"]
    assert [k.get_secret_value() for k in settings.auth.admin_keys] == [COMPOSE_SAMPLE_ENV["BOTLINE_ADMIN_KEY"]]
    assert settings.server.base_url == "http://localhost:8000"
    (gateway,) = settings.gateways
    assert gateway.complete and gateway.parameters["apiKey"] == COMPOSE_SAMPLE_ENV["OPENAI_API_KEY"]


def test_compose_refuses_to_start_without_an_admin_key() -> None:
    """Two replicas starting on an empty Redis would each print a different bootstrap key."""
    value = str(botline_services()["botline-1"]["environment"]["BOTLINE_AUTH__ADMIN_KEYS"])
    assert "${BOTLINE_ADMIN_KEY:?" in value


def test_kubernetes_config_loads_with_the_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _load("kubernetes", tmp_path, monkeypatch)
    assert settings.server.host == "0.0.0.0"
    assert settings.storage.url.startswith("redis://")
    assert len(settings.auth.admin_keys) == 1
    (gateway,) = settings.gateways
    assert gateway.complete
