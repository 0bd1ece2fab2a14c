"""The bundled offline sample, served as if the provider had answered.

Each sample snapshot becomes the same :class:`~pipeline.providers.base.Body` objects a live
fetch produces, stamped with the time the data was recorded, so it flows through the
same bronze → silver → gold path and is marked ``source = sample`` everywhere. The
sample's manifest names its provider (CoinGecko when it does not) and lists each body
under the provider's endpoint name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pipeline.errors import BronzeError
from pipeline.providers.base import COINS, DEFAULT_PROVIDER, TOTALS, Body
from pipeline.providers.registry import get_provider

SAMPLE_DIR = Path(__file__).resolve().parent.parent.parent / "data" / "sample"


@dataclass
class SampleSnapshot:
    snapshot_at: datetime
    vs_currency: str
    responses: list[Body]
    provider: str = DEFAULT_PROVIDER


def sample_snapshots(sample_dir: Path = SAMPLE_DIR) -> list[SampleSnapshot]:
    """Every snapshot listed in the sample's manifest, oldest first."""
    manifest_path = sample_dir / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise BronzeError(f"the offline sample is missing: {manifest_path}") from None
    provider = get_provider(manifest.get("provider", DEFAULT_PROVIDER))
    snapshots = []
    for entry in manifest["snapshots"]:
        snapshot_at = datetime.fromisoformat(entry["snapshot_at"])
        responses = []
        for role in (COINS, TOTALS):
            endpoint = provider.endpoints.get(role)
            if endpoint is None or endpoint not in entry:
                continue
            spec = entry[endpoint]
            responses.append(
                Body(
                    endpoint=endpoint,
                    path=spec["path"],
                    params=spec["params"],
                    status=200,
                    body=(sample_dir / spec["file"]).read_bytes(),
                    fetched_at=snapshot_at,
                    attempt=1,
                    page=spec["params"].get("page") if role == COINS else None,
                )
            )
        snapshots.append(SampleSnapshot(snapshot_at, entry.get("vs_currency", "usd"), responses, provider.name))
    return sorted(snapshots, key=lambda s: s.snapshot_at)
