"""Configuration: YAML, ${VAR} interpolation, BOTLINE_* overrides, one-line errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from botline.config import ConfigError, interpolate, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_defaults_without_a_file() -> None:
    settings = load_settings(None)
    assert settings.server.port == 8080
    assert settings.storage.url == "sqlite:///./data/botline.db"
    assert settings.server.base_url == "http://127.0.0.1:8080"
    assert settings.providers.telegram.api_url == "https://api.telegram.org"
    assert settings.providers.zapi.api_url == "https://api.z-api.io"
    assert settings.providers.kapso.api_url == "https://api.kapso.ai"


def test_environment_wins_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTLINE_SERVER__PORT", "9000")
    monkeypatch.setenv("BOTLINE_STORAGE__URL", "redis://127.0.0.1:6379/3")
    settings = load_settings(write(tmp_path, "server:\n  port: 7000\n  public_url: https://bot.example.com/\n"))
    assert settings.server.port == 9000
    assert settings.storage.url == "redis://127.0.0.1:6379/3"
    assert settings.server.base_url == "https://bot.example.com"


def test_a_list_in_the_environment_that_is_not_json_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTLINE_AUTH__ADMIN_KEYS", "sk-not-a-json-list")
    with pytest.raises(ConfigError, match=r"^environment BOTLINE_AUTH__ADMIN_KEYS: lists and mappings must be JSON"):
        load_settings(None)


def test_interpolation_uses_values_then_defaults() -> None:
    env = {"MODEL": "gpt-x", "EMPTY": ""}
    assert interpolate("${MODEL} ${MISSING:-fallback} ${EMPTY:-d} [${MISSING}]", env) == "gpt-x fallback d []"


def test_a_declared_gateway_without_a_model_is_skipped_not_an_error(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_MODEL", raising=False)
    text = (
        "gateways:\n  - name: default\n    parameters:\n"
        "      baseAddress: https://x/v1\n      modelName: ${OPENAI_MODEL}\n"
    )
    settings = load_settings(write(tmp_path, text))
    assert [g.complete for g in settings.gateways] == [False]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("server:\n  port: eighty\n", "config key server.port:"),
        ("servr:\n  port: 1\n", "config key servr:"),
        ("storage:\n  url: mysql://x\n", "config key storage:"),
        ("gateways:\n  - name: g\n    parameters: {baseAddress: ftp://x, modelName: m}\n",
         "config key gateways.0.parameters.baseAddress: must be an absolute http(s) URL"),
        ("server: [1, 2\n", "invalid YAML"),
        ("- just\n- a list\n", "the top level must be a mapping"),
        ("knowledge:\n  chunk_chars: 5000\n  max_document_chars: 4000\n",
         "knowledge.chunk_chars must not exceed knowledge.max_document_chars"),
        ("knowledge:\n  chunk_chars: 400\n  chunk_overlap_chars: 300\n",
         "knowledge.chunk_overlap_chars must be at most half of knowledge.chunk_chars"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text))
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        load_settings(tmp_path / "absent.yaml")


def test_the_shipped_example_is_valid() -> None:
    settings = load_settings(Path(__file__).parent.parent / "config.example.yaml")
    assert settings.server.port == 8080 and settings.gateways[0].name == "default"
