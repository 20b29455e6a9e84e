"""Review finding M3: caches and pools that grow with what tenants send stay within fixed bounds."""

from __future__ import annotations

from botline.config import LLMSettings
from botline.egress import Egress, EgressPolicy, Trust
from botline.gateway.llm import ClientPool
from botline.gateway.remote import RemoteFetcher
from tests.egress.servers import Site, text


async def test_m3_the_source_cache_keeps_within_its_byte_budget() -> None:
    async with Site() as site, Egress(EgressPolicy(["127.0.0.0/8"])) as egress:
        site.routes["/source"] = text("y" * 1000)
        fetcher = RemoteFetcher(egress, max_bytes=10_000, cache_bytes=5_000)
        for n in range(50):  # ?x=1...50: every URL distinct
            body = await fetcher.cached(f"{site.url}/source?x={n}", trust=Trust.TENANT, headers={}, ttl=600,
                                        timeout=5)
            assert len(body) == 1000
        again = await fetcher.cached(f"{site.url}/source?x=49", trust=Trust.TENANT, headers={}, ttl=600, timeout=5)
        first = await fetcher.cached(f"{site.url}/source?x=0", trust=Trust.TENANT, headers={}, ttl=600, timeout=5)
    assert again == first
    assert len(site.headers_at("/source")) == 51  # the newest was served from cache, the oldest fetched again


async def test_m3_the_client_pool_is_bounded() -> None:
    async with Egress(EgressPolicy()) as egress:
        pool = ClientPool(LLMSettings(), egress, max_response_bytes=1024 * 1024, capacity=8)
        first = pool.get("https://upstream.example/v1", "key-0", Trust.TENANT)
        for n in range(50):  # every PATCH or /validate with a new address
            pool.get(f"https://upstream{n}.example/v1", f"key-{n}", Trust.TENANT)
        assert len(pool) == 8
        assert pool.get("https://upstream.example/v1", "key-0", Trust.TENANT) is not first
        lean = pool.model("https://upstream.example/v1", "key-0", Trust.TENANT)
        assert pool.model("https://upstream.example/v1", "key-0", Trust.TENANT) is lean  # reused while kept
        for n in range(50):  # the turns' clients are bounded the same way
            pool.model(f"https://upstream{n}.example/v1", f"key-{n}", Trust.TENANT)
        assert pool.model("https://upstream.example/v1", "key-0", Trust.TENANT) is not lean
