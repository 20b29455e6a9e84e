"""Every data file under deploy/ parses, and the Kubernetes manifests are complete objects kustomize applies."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.files import DEPLOY, K8S, data_files, documents, k8s_objects


@pytest.mark.parametrize("path", data_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_and_json_file_parses(path: Path) -> None:
    assert documents(path), f"{path} holds no document"


def test_every_kubernetes_object_has_an_api_version_a_kind_and_a_name() -> None:
    objects = k8s_objects()
    assert objects
    for obj in objects:
        assert obj.get("apiVersion") and obj.get("kind") and obj["metadata"].get("name"), obj


def test_kustomization_lists_every_manifest() -> None:
    (kustomization,) = documents(K8S / "kustomization.yaml")
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests
