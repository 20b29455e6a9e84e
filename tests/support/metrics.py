"""Reading a running botline's GET /metrics the way Prometheus does (prometheus_client's own parser)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.support.server import RunningServer


@dataclass
class Scrape:
    samples: list[Sample]

    def value(self, name: str, **labels: str) -> float:
        """The sample `name` whose labels include `labels` (summed when several match); 0 when absent."""
        return sum(s.value for s in self.samples
                   if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))

    def names(self) -> set[str]:
        return {s.name for s in self.samples}


async def scrape(server: RunningServer, token: str | None = None) -> Scrape:
    """GET /metrics (with `Authorization: Bearer token` when given), parsed."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with server.http.get(server.url + "/metrics", headers=headers) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()
    return Scrape([sample for family in text_string_to_metric_families(text) for sample in family.samples])
