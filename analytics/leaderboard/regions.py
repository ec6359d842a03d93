"""The regions the leaderboard knows: the reference's seed, the config's extra ones, those seen in the lake.

The reference (livepeer/leaderboard-serverless) seeds its regions table with these ids, each for
transcoding, some also for AI; a posted stat whose region it does not know is silently dropped.
We answer 400 naming the region instead, and know every region our own orchestrators are in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

AI_REGIONS = ("GLOBAL", "MDW", "FRA", "LAX")
SEEDED = (
    ("GLOBAL", "Global"), ("ATL", "Atlanta"), ("ATL2", "Atlanta 2"), ("MDW", "Chicago"), ("FRA", "Frankfurt"),
    ("HOU", "Houston"), ("LON", "London"), ("LAX", "Los Angeles"), ("MAD", "Madrid"), ("MIA", "Miami"),
    ("MOS2", "Moscow"), ("ASH", "Nashua"), ("NYC", "New York City"), ("PRG", "Prague"), ("SJO", "San Jose"),
    ("SAO", "São Paulo"), ("SEA", "Seattle"), ("SIN", "Singapore"), ("STO", "Stockholm"), ("SYD", "Sydney"),
    ("HND", "Tokyo"), ("TOR", "Toronto"),
)


@dataclass(frozen=True)
class Region:
    """One region of one job type, as GET /api/regions lists it."""

    id: str
    name: str
    type: str

    def wire(self) -> dict[str, str]:
        """The JSON object of the region."""
        return {"id": self.id, "name": self.name, "type": self.type}


def known_regions(*, extra: Mapping[str, str], discovered: Iterable[str]) -> list[Region]:
    """The seed (transcoding, and AI where seeded), then config and discovered regions as AI regions."""
    regions = [Region(rid, name, "transcoding") for rid, name in SEEDED]
    regions += [Region(rid, name, "ai") for rid, name in SEEDED if rid in AI_REGIONS]
    ai_ids = set(AI_REGIONS)
    for rid, name in [*((k.strip().upper(), v) for k, v in extra.items()), *((d, d) for d in discovered)]:
        if rid and rid not in ai_ids:
            ai_ids.add(rid)
            regions.append(Region(rid, name, "ai"))
    return regions
