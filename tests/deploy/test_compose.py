"""deploy/docker-compose.yml: two identical replicas on one persistent Redis behind nginx."""

from __future__ import annotations

from typing import Any

import yaml

from botline.config import Settings
from tests.deploy.files import (
    DEPLOY,
    NGINX_CONF,
    botline_services,
    compose,
    k8s_object,
    nginx_blocks,
    project_version,
    seconds,
)

CONTAINER_CONFIG = "/etc/botline/config.yaml"


def _compose_config() -> dict[str, Any]:
    loaded = yaml.safe_load((DEPLOY / "compose" / "botline.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path (relative to deploy/) of a service's bind mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = str(volume).split(":")
        mounts[target] = source
    return mounts


def test_two_identical_replicas_run_the_image_kubernetes_runs() -> None:
    services = botline_services()
    assert len(services) == 2
    first, second = services.values()
    assert first == second
    (container,) = k8s_object("Deployment", "botline")["spec"]["template"]["spec"]["containers"]
    assert first["image"] == container["image"] == f"botline:{project_version()}"
    assert first["build"]["dockerfile"] == "deploy/Dockerfile"


def test_replicas_mount_their_config_where_botline_config_points() -> None:
    service = botline_services()["botline-1"]
    assert service["environment"]["BOTLINE_CONFIG"] == CONTAINER_CONFIG
    source = _mounts(service)[CONTAINER_CONFIG]
    assert (DEPLOY / source).is_file()


def test_docker_stop_waits_longer_than_the_shutdown_grace() -> None:
    grace = _compose_config()["server"]["shutdown_grace_seconds"]
    for service in botline_services().values():
        assert seconds(service["stop_grace_period"]) > grace


def test_replicas_may_hold_thousands_of_open_streams() -> None:
    for service in botline_services().values():
        assert int(service["ulimits"]["nofile"]) >= 10_000


def test_redis_keeps_an_append_only_file_on_a_volume() -> None:
    redis = compose()["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    volume = _mounts(redis)["/data"]
    assert volume in compose()["volumes"], "a named volume, so the AOF outlives the container"
    statefulset = k8s_object("StatefulSet", "botline-redis")
    assert redis["image"] == statefulset["spec"]["template"]["spec"]["containers"][0]["image"]


def test_replicas_wait_for_redis_and_the_proxy_for_healthy_replicas() -> None:
    for service in botline_services().values():
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    proxy = compose()["services"]["proxy"]
    assert set(proxy["depends_on"]) == set(botline_services())
    assert all(d["condition"] == "service_healthy" for d in proxy["depends_on"].values())


def test_the_proxy_serves_the_shipped_nginx_config_and_reaches_every_replica() -> None:
    proxy = compose()["services"]["proxy"]
    assert (DEPLOY / _mounts(proxy)["/etc/nginx/conf.d/default.conf"]).resolve() == NGINX_CONF
    upstream = nginx_blocks(NGINX_CONF.read_text(encoding="utf-8"))["upstream botline"]
    servers = {directive[1] for directive in upstream if directive[0] == "server"}
    port = _compose_config()["server"]["port"]
    assert servers == {f"{name}:{port}" for name in botline_services()}
    assert [str(p).rsplit(":", 1)[1] for p in proxy["ports"]] == ["80"]


def test_replicas_are_reached_only_through_the_proxy() -> None:
    for service in botline_services().values():
        assert "ports" not in service, "a published replica port would bypass nginx (and its /metrics denial)"
        assert service["expose"] == [str(Settings().server.port)]
