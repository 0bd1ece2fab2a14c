"""The bundled offline sample, served as if the API had answered.

Each sample snapshot becomes the same ``ApiResponse`` objects the live client
produces, stamped with the time the data was recorded, so it flows through the
same bronze → silver → gold path and is marked ``source = sample`` everywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pipeline.errors import BronzeError
from pipeline.sources.coingecko.client import ApiResponse

SAMPLE_DIR = Path(__file__).resolve().parent.parent.parent / "data" / "sample"


@dataclass
class SampleSnapshot:
    snapshot_at: datetime
    vs_currency: str
    responses: list[ApiResponse]


def sample_snapshots(sample_dir: Path = SAMPLE_DIR) -> list[SampleSnapshot]:
    """Every snapshot listed in the sample's manifest, oldest first."""
    manifest_path = sample_dir / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise BronzeError(f"the offline sample is missing: {manifest_path}") from None
    snapshots = []
    for entry in manifest["snapshots"]:
        snapshot_at = datetime.fromisoformat(entry["snapshot_at"])
        responses = []
        for endpoint in ("markets", "global"):
            if endpoint not in entry:
                continue
            spec = entry[endpoint]
            responses.append(
                ApiResponse(
                    endpoint=endpoint,
                    path=spec["path"],
                    params=spec["params"],
                    status=200,
                    body=(sample_dir / spec["file"]).read_bytes(),
                    fetched_at=snapshot_at,
                    attempt=1,
                    page=spec["params"].get("page") if endpoint == "markets" else None,
                )
            )
        snapshots.append(SampleSnapshot(snapshot_at, entry.get("vs_currency", "usd"), responses))
    return sorted(snapshots, key=lambda s: s.snapshot_at)
