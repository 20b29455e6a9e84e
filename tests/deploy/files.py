"""Readers for the files under deploy/: YAML documents, the Dockerfile, nginx directives, env names.

Small parsers on purpose: the tests check the fields that matter to a running deployment, not the
full grammar of each format.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from botline.config import CONFIG_FILE_ENV, Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
NGINX_CONF = DEPLOY / "nginx" / "botline.conf"
SYSTEMD_UNIT = DEPLOY / "botline.service"
ENV_PREFIX = "BOTLINE_"


def project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return str(tomllib.load(file)["project"]["version"])


def data_files() -> list[Path]:
    """Every YAML and JSON file under deploy/."""
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yml", ".yaml", ".json"})


def documents(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as file:
        return [doc for doc in yaml.safe_load_all(file) if doc is not None]


def k8s_objects() -> list[dict[str, Any]]:
    """Every Kubernetes object of the manifests (kustomization.yaml is kustomize's, not the API's)."""
    return [doc for path in sorted(K8S.glob("*.yaml")) if path.name != "kustomization.yaml" for doc in documents(path)]


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    found = [o for o in k8s_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def compose() -> dict[str, Any]:
    (doc,) = documents(COMPOSE_FILE)
    assert isinstance(doc, dict)
    return doc


_COMPOSE_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def compose_interpolate(text: str, env: dict[str, str]) -> str:
    """docker compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}`, as `docker compose` resolves them."""

    def replace(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        value = env.get(name)
        if operator and operator.endswith("?") and not value:
            raise KeyError(f"{name}: {argument}")
        if operator and operator.endswith("-") and not value:
            return str(argument)
        return value or ""

    return _COMPOSE_VARIABLE.sub(replace, text)


def config_key(env_name: str) -> str | None:
    """The config key a BOTLINE_* variable sets (`BOTLINE_AUTH__ADMIN_KEYS` -> `auth.admin_keys`), or None.

    Walks the Settings model the way pydantic-settings does (prefix, "__" between levels, any case).
    """
    if not env_name.startswith(ENV_PREFIX):
        return None
    parts = env_name.removeprefix(ENV_PREFIX).lower().split("__")
    model: type[BaseModel] = Settings
    for depth, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return None
        if depth < len(parts) - 1:
            annotation = field.annotation
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                return None
            model = annotation
    return ".".join(parts)


def is_botline_variable(env_name: str) -> bool:
    """A config key, or BOTLINE_CONFIG (the config file's path)."""
    return env_name == CONFIG_FILE_ENV or config_key(env_name) is not None


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[Instruction]:
    """Instructions with continuation lines joined; comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


_NGINX_TOKEN = re.compile(r'"[^"]*"|\'[^\']*\'|[;{}]|[^\s;{}]+')


def directives(text: str) -> list[list[str]]:
    """nginx directives as token lists, comments dropped; a block opening ends with "{", a closing is ["}"]."""
    body = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    result: list[list[str]] = []
    current: list[str] = []
    for token in _NGINX_TOKEN.findall(body):
        if token == ";":
            result.append(current)
            current = []
        elif token in {"{", "}"}:
            result.append([*current, token])
            current = []
        else:
            current.append(token.strip("\"'") if token[0] in "\"'" else token)
    return result


def nginx_blocks(text: str) -> dict[str, list[list[str]]]:
    """The directives directly inside each block, keyed by its opening words ("server", "location = /metrics")."""
    blocks: dict[str, list[list[str]]] = {}
    stack: list[str] = ["main"]
    for directive in directives(text):
        if directive[-1] == "{":
            stack.append(" ".join(directive[:-1]))
            blocks.setdefault(stack[-1], [])
        elif directive == ["}"]:
            stack.pop()
        else:
            blocks.setdefault(stack[-1], []).append(directive)
    return blocks


def nginx_setting(block: list[list[str]], name: str) -> list[str]:
    """The arguments of `name` in a block (empty when absent)."""
    for directive in block:
        if directive[0] == name:
            return directive[1:]
    return []


def seconds(duration: str | int | float) -> float:
    """A compose/systemd duration ("40s", "1m30s", 40) in seconds."""
    if isinstance(duration, int | float):
        return float(duration)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)?", duration.strip())
    assert parts, f"not a duration: {duration!r}"
    return sum(float(number) * units[unit or "s"] for number, unit in parts)


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = k8s_object("Deployment", "botline")["spec"]["template"]["spec"]
    return spec


def botline_container() -> dict[str, Any]:
    (container,) = [c for c in pod_spec()["containers"] if c["name"] == "botline"]
    assert isinstance(container, dict)
    return container


def configmap_config() -> str:
    return str(k8s_object("ConfigMap", "botline-config")["data"]["config.yaml"])


def k8s_environment() -> dict[str, str]:
    """What the botline container sees: its env entries and every key of the Secrets it loads."""
    container = botline_container()
    env = {e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e}
    for source in container.get("envFrom", []):
        secret = k8s_object("Secret", source["secretRef"]["name"])
        env.update({name: str(value) for name, value in secret["stringData"].items()})
    return env


COMPOSE_SAMPLE_ENV = {
    "BOTLINE_ADMIN_KEY": "sk-compose-admin-key-0123456789abcdefghijklmnop",
    "OPENAI_API_KEY": "sk-upstream-from-env",
    "OPENAI_MODEL": "gpt-4o-mini",
}
"""What an operator puts in deploy/.env, for resolving the compose file's ${...}."""


def botline_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose()["services"].items() if name.startswith("botline")}


def compose_environment(service: dict[str, Any]) -> dict[str, str]:
    """A compose service's environment as the container gets it, with COMPOSE_SAMPLE_ENV in deploy/.env."""
    return {name: compose_interpolate(str(value), COMPOSE_SAMPLE_ENV) for name, value in service["environment"].items()}


def runtime_stage() -> list[Instruction]:
    """The instructions of the image's final stage (what runs)."""
    instructions = dockerfile_instructions()
    last_from = max(i for i, instruction in enumerate(instructions) if instruction.keyword == "FROM")
    return instructions[last_from:]


def dockerfile_environment() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in runtime_stage():
        if instruction.keyword == "ENV":
            for pair in instruction.arguments.split():
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def systemd_unit() -> dict[str, dict[str, list[str]]]:
    """Sections -> keys -> values (a key may repeat, e.g. Environment=)."""
    unit: dict[str, dict[str, list[str]]] = {}
    section = ""
    for line in SYSTEMD_UNIT.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            unit.setdefault(section, {})
            continue
        key, _, value = line.partition("=")
        unit[section].setdefault(key.strip(), []).append(value.strip())
    return unit


def systemd_environment() -> dict[str, str]:
    env: dict[str, str] = {}
    for assignment in systemd_unit()["Service"].get("Environment", []):
        for pair in assignment.split():
            name, _, value = pair.strip('"').partition("=")
            env[name] = value
    return env
