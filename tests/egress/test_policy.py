"""The tenant egress policy: which addresses are internal, and how the operator widens it."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from botline.config import ConfigError, load_settings
from botline.egress.policy import EgressPolicy, HostRule, is_internal, parse_allow_entry

INTERNAL = [
    "127.0.0.1", "127.255.255.254", "10.0.0.1", "10.255.1.2", "172.16.0.1", "172.31.255.255", "192.168.1.1",
    "169.254.169.254", "169.254.0.1", "100.64.0.1", "100.127.255.254", "0.0.0.0", "224.0.0.1", "239.255.255.250",
    "255.255.255.255", "240.0.0.1", "192.0.2.1", "198.18.0.1",
    "::1", "::", "fd00::1", "fc00::5", "fe80::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
    "64:ff9b::a00:1", "2002:7f00:1::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:db8::1",
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "100.63.255.255", "2606:4700:4700::1111", "64:ff9b::808:808"]


@pytest.mark.parametrize("address", INTERNAL)
def test_internal_addresses_are_refused_to_tenants(address: str) -> None:
    assert is_internal(ipaddress.ip_address(address))
    assert not EgressPolicy().permits("example.com", 443, address)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    assert not is_internal(ipaddress.ip_address(address))
    assert EgressPolicy().permits("example.com", 443, address)


def test_the_allow_list_widens_by_network_and_by_host_and_port() -> None:
    policy = EgressPolicy(["10.0.0.0/8", "ollama.internal:11434", "[fd00::5]:8080", "models.lan"])
    assert policy.permits("anything", 80, "10.1.2.3")
    assert not policy.permits("anything", 80, "192.168.1.1")
    assert policy.permits("Ollama.Internal.", 11434, "192.168.1.9")
    assert not policy.permits("ollama.internal", 8080, "192.168.1.9")
    assert policy.permits("fd00::5", 8080, "fd00::5") and not policy.permits("fd00::5", 8081, "fd00::5")
    assert policy.permits("models.lan", 1, "172.16.0.2")


def test_allow_entries_parse_or_say_why() -> None:
    assert parse_allow_entry("10.0.0.5:11434") == HostRule("10.0.0.5", 11434)
    assert parse_allow_entry("10.0.0.5") == ipaddress.ip_network("10.0.0.5/32")
    for bad in ["", "http://x", "host:99999", "a b", "*.internal"]:
        with pytest.raises(ValueError):
            parse_allow_entry(bad)


def test_a_bad_allow_entry_is_a_one_line_config_error_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text('security:\n  egress:\n    allow: ["10.0.0.0/8", "http://bad"]\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert str(caught.value).startswith("config key security.egress.allow.1:")
    assert "\n" not in str(caught.value)
