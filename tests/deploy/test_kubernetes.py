"""deploy/k8s/: probes that reach real routes, a shutdown that fits the grace period, selectors that match."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy.files import (
    K8S,
    botline_container,
    configmap_config,
    dockerfile_instructions,
    k8s_object,
    k8s_objects,
    pod_spec,
    runtime_stage,
)
from tests.support.server import RunningServer

PROBES = {"readinessProbe": "/readyz", "livenessProbe": "/healthz"}


def _deployment() -> dict[str, Any]:
    return k8s_object("Deployment", "botline")


def _config() -> dict[str, Any]:
    loaded = yaml.safe_load(configmap_config())
    assert isinstance(loaded, dict)
    return loaded


def _pod_labels() -> dict[str, str]:
    labels: dict[str, str] = _deployment()["spec"]["template"]["metadata"]["labels"]
    return labels


def _container_port(name_or_number: str | int) -> int:
    for port in botline_container()["ports"]:
        if name_or_number in (port["name"], port["containerPort"]):
            return int(port["containerPort"])
    raise AssertionError(f"no container port {name_or_number}")


def test_several_replicas_of_the_image_on_the_configured_port() -> None:
    assert _deployment()["spec"]["replicas"] >= 2
    (exposed,) = [i.arguments for i in runtime_stage() if i.keyword == "EXPOSE"]
    assert _container_port("http") == int(exposed) == _config()["server"]["port"]


@pytest.mark.parametrize(("probe", "path"), PROBES.items())
async def test_probes_ask_routes_botline_serves(probe: str, path: str, server: RunningServer) -> None:
    http_get = botline_container()[probe]["httpGet"]
    assert http_get["path"] == path
    assert _container_port(http_get["port"]) == _config()["server"]["port"]
    async with server.http.get(server.url + path) as response:  # kubelet sends no credentials
        assert response.status == 200
        assert await response.json() == {"status": "ok"}


def test_pods_are_killed_only_after_the_shutdown_grace() -> None:
    pause = botline_container()["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep"
    grace = _config()["server"]["shutdown_grace_seconds"]
    assert pod_spec()["terminationGracePeriodSeconds"] > int(pause[1]) + grace


def test_pods_run_unprivileged_on_a_read_only_root() -> None:
    pod, container = pod_spec(), botline_container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    (user,) = [i.arguments for i in dockerfile_instructions() if i.keyword == "USER"]
    assert str(pod["securityContext"]["runAsUser"]) == user.split(":")[0]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "/tmp" in mounts, "multipart uploads are spooled to /tmp"
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_volume = volumes[mounts["/etc/botline"]]
    assert config_volume["configMap"]["name"] == "botline-config"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["BOTLINE_CONFIG"] == "/etc/botline/config.yaml"


def test_the_autoscaler_scales_the_deployment_on_requested_cpu() -> None:
    hpa = k8s_object("HorizontalPodAutoscaler", "botline")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "botline"}
    assert hpa["spec"]["minReplicas"] == _deployment()["spec"]["replicas"]
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert botline_container()["resources"]["requests"]["cpu"], "CPU utilization is relative to the request"


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def test_the_disruption_budget_covers_the_botline_pods_and_leaves_one_up() -> None:
    pdb = k8s_object("PodDisruptionBudget", "botline")
    assert pdb["apiVersion"] == "policy/v1"
    assert _selects(pdb["spec"]["selector"]["matchLabels"], _pod_labels())
    assert 1 <= pdb["spec"]["minAvailable"] < _deployment()["spec"]["replicas"]


def test_the_service_sends_traffic_to_botline_pods_only() -> None:
    service = k8s_object("Service", "botline")
    selector = service["spec"]["selector"]
    assert _selects(selector, _pod_labels())
    redis_labels = k8s_object("StatefulSet", "botline-redis")["spec"]["template"]["metadata"]["labels"]
    assert not _selects(selector, redis_labels)
    assert "sessionAffinity" not in service["spec"], "any replica takes any request"
    (port,) = service["spec"]["ports"]
    assert _container_port(port["targetPort"]) == _config()["server"]["port"]


def test_the_deployment_selector_matches_its_pods() -> None:
    assert _selects(_deployment()["spec"]["selector"]["matchLabels"], _pod_labels())


def test_redis_keeps_an_append_only_file_on_a_persistent_volume() -> None:
    statefulset = k8s_object("StatefulSet", "botline-redis")
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] == "everysec"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    data_dir = args[args.index("--dir") + 1]
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert {"name": claim["metadata"]["name"], "mountPath": data_dir} in container["volumeMounts"]


def test_botline_is_pointed_at_the_redis_service() -> None:
    url = urlsplit(_config()["storage"]["url"])
    service = k8s_object("Service", "botline-redis")
    assert url.hostname == service["metadata"]["name"]
    assert url.port == service["spec"]["ports"][0]["port"]
    assert k8s_object("StatefulSet", "botline-redis")["spec"]["serviceName"] == service["metadata"]["name"]
    assert _selects(service["spec"]["selector"],
                    k8s_object("StatefulSet", "botline-redis")["spec"]["template"]["metadata"]["labels"])


def test_only_botline_pods_may_reach_redis() -> None:
    policy = k8s_object("NetworkPolicy", "botline-redis")["spec"]
    redis_labels = k8s_object("StatefulSet", "botline-redis")["spec"]["template"]["metadata"]["labels"]
    assert _selects(policy["podSelector"]["matchLabels"], redis_labels)
    (rule,) = policy["ingress"]
    (source,) = rule["from"]
    assert _selects(source["podSelector"]["matchLabels"], _pod_labels())
    assert not _selects(source["podSelector"]["matchLabels"], redis_labels)
    assert rule["ports"] == [{"port": 6379}]


def test_secret_values_are_marked_placeholders() -> None:
    secret = k8s_object("Secret", "botline-secrets")
    assert "CHANGE-ME" in secret["stringData"]["BOTLINE_AUTH__ADMIN_KEYS"]
    assert secret["stringData"]["OPENAI_API_KEY"] == "CHANGE-ME"
    assert "PLACEHOLDER" in (K8S / "secret.yaml").read_text(encoding="utf-8")


def test_no_secret_sits_in_the_config_map_or_the_deployment() -> None:
    plain = {e["name"] for o in k8s_objects() if o["kind"] == "Deployment"
             for c in o["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])}
    assert not {name for name in plain if "KEY" in name}
    assert "admin_keys" not in configmap_config()


def test_botline_pods_reach_dns_redis_and_public_addresses_only() -> None:
    policy = k8s_object("NetworkPolicy", "botline-egress")["spec"]
    assert policy["policyTypes"] == ["Egress"]
    assert _selects(policy["podSelector"]["matchLabels"], _pod_labels())
    dns, redis, public = policy["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    redis_labels = k8s_object("StatefulSet", "botline-redis")["spec"]["template"]["metadata"]["labels"]
    assert _selects(redis["to"][0]["podSelector"]["matchLabels"], redis_labels)
    refused = {cidr for block in public["to"] for cidr in block["ipBlock"]["except"]}
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10",
            "fc00::/7", "fe80::/10"} <= refused
