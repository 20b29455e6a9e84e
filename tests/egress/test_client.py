"""The egress client: destination policy on the connected address and on every redirect hop, caps,
credentials across origins. Loopback stands for "internal" (no test sends anything elsewhere: the
private and link-local addresses below are refused before any connection is tried)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from botline.egress import DestinationRefused, Egress, EgressError, EgressPolicy, ResponseTooLarge, Trust
from tests.egress.servers import SECRET, InternalService, Site, redirect_to, streamed, text

LIMIT = 1024 * 1024


@pytest.fixture
async def internal() -> AsyncIterator[InternalService]:
    async with InternalService() as service:
        yield service


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    async with Site() as running:
        yield running


def egress_allowing(*allow: str, dns: AbstractResolver | None = None) -> Egress:
    return Egress(EgressPolicy(list(allow)), dns=(lambda: dns) if dns is not None else None)


async def get(egress: Egress, url: str, trust: Trust = Trust.TENANT, **options: object) -> str:
    response = await egress.request("GET", url, trust=trust, max_bytes=LIMIT, timeout=5, **options)  # type: ignore[arg-type]
    return response.text()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "127.1", "0x7f.0.0.1"])
async def test_h2_a_tenant_cannot_reach_loopback_by_any_spelling(internal: InternalService, host: str) -> None:
    async with egress_allowing() as egress:
        with pytest.raises(EgressError):  # refused, or (127.1) not even a URL aiohttp accepts
            await get(egress, f"http://{host}:{internal.port}/latest/meta-data/iam/")
    assert internal.connections == 0


@pytest.mark.parametrize("url", [
    "http://10.0.0.1/", "http://10.255.0.9:8080/admin", "http://169.254.169.254/latest/meta-data/",
    "http://[fd00::1]/", "http://100.64.0.1/", "http://0.0.0.0:80/", "http://[::ffff:10.0.0.1]/",
])
async def test_h2_private_link_local_and_cgnat_literals_are_refused_before_connecting(url: str) -> None:
    async with egress_allowing() as egress:
        with pytest.raises(DestinationRefused):
            await get(egress, url)


async def test_the_operator_and_the_allow_list_reach_internal_services(internal: InternalService) -> None:
    async with egress_allowing() as egress:
        assert await get(egress, internal.url + "/", Trust.OPERATOR) == SECRET  # an admin's local Ollama
    async with egress_allowing(f"127.0.0.1:{internal.port}") as egress:
        assert await get(egress, internal.url + "/") == SECRET
    async with egress_allowing("127.0.0.0/8") as egress:
        assert await get(egress, f"http://localhost:{internal.port}/") == SECRET
    assert internal.connections == 3


@pytest.mark.parametrize("target", ["{internal}/latest/meta-data", "http://localhost:{port}/x",
                                    "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/"])
async def test_h2_a_redirect_to_an_internal_address_is_refused(
    internal: InternalService, site: Site, target: str
) -> None:
    site.routes["/go"] = redirect_to(target.format(internal=internal.url, port=internal.port))
    async with egress_allowing(f"127.0.0.1:{site.port}") as egress:  # the redirector itself is allowed
        with pytest.raises(DestinationRefused):
            await get(egress, site.url + "/go")
    assert internal.connections == 0


class ScriptedDns(AbstractResolver):
    """A resolver that answers every name with the scripted addresses (a DNS server an attacker runs)."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        self.asked.append(host)
        return [ResolveResult(hostname=host, host=address, port=port, family=socket.AF_INET, proto=0,
                              flags=socket.AI_NUMERICHOST) for address in self.addresses]

    async def close(self) -> None:
        return None


async def test_h2_a_name_that_resolves_to_loopback_is_refused_on_the_address_connected_to(
    internal: InternalService,
) -> None:
    """DNS rebinding: whatever a name resolved to before, the address checked is the one aiohttp is
    about to connect to (the resolver's answer for this connection)."""
    dns = ScriptedDns("127.0.0.1")
    async with egress_allowing(dns=dns) as egress:
        with pytest.raises(DestinationRefused):
            await get(egress, f"http://rebind.example:{internal.port}/")
    assert dns.asked == ["rebind.example"] and internal.connections == 0


async def test_a_name_with_one_internal_address_connects_only_to_the_allowed_ones(internal: InternalService) -> None:
    dns = ScriptedDns("10.0.0.7", "127.0.0.1")
    async with egress_allowing(f"127.0.0.1:{internal.port}", dns=dns) as egress:
        with pytest.raises(DestinationRefused):  # 127.0.0.1 is allowed only for its literal host
            await get(egress, f"http://mixed.example:{internal.port}/")
    async with egress_allowing("127.0.0.0/8", dns=dns) as egress:
        assert await get(egress, f"http://mixed.example:{internal.port}/") == SECRET
    assert internal.connections == 1


async def test_l6_credentials_do_not_follow_a_redirect_to_another_origin(site: Site) -> None:
    async with Site() as other:
        other.routes["/landing"] = text("landed")
        site.routes["/away"] = redirect_to(other.url + "/landing")
        site.routes["/here"] = redirect_to("/same")
        site.routes["/same"] = text("same origin")
        headers = {"Authorization": "Bearer sk-secret", "X-API-Key": "kapso-key", "Metadata-Flavor": "Google",
                   "Accept": "text/plain"}
        async with egress_allowing("127.0.0.0/8") as egress:
            assert await get(egress, site.url + "/away", headers=headers) == "landed"
            assert await get(egress, site.url + "/here", headers=headers) == "same origin"
    [landed] = other.headers_at("/landing")
    assert "Authorization" not in landed and "X-API-Key" not in landed and "Metadata-Flavor" not in landed
    assert landed["Accept"] == "text/plain"
    [same] = site.headers_at("/same")
    assert same["X-API-Key"] == "kapso-key" and same["Authorization"] == "Bearer sk-secret"


@pytest.mark.parametrize("handler", [text(b"x" * (LIMIT + 1)), streamed(8 * LIMIT)])
async def test_m3_bodies_past_the_cap_are_refused_while_reading(site: Site, handler: object) -> None:
    site.routes["/big"] = handler  # type: ignore[assignment]
    async with egress_allowing("127.0.0.0/8") as egress:
        with pytest.raises(ResponseTooLarge) as caught:
            await get(egress, site.url + "/big")
    assert str(LIMIT) in caught.value.message and "127.0.0.1" not in caught.value.message


async def test_too_many_redirects_end_the_request(site: Site) -> None:
    site.routes["/loop"] = redirect_to("/loop")
    async with egress_allowing("127.0.0.0/8") as egress:
        with pytest.raises(Exception, match="too many redirects"):
            await get(egress, site.url + "/loop")
