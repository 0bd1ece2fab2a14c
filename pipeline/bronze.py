"""Bronze: every response body exactly as received, as JSON and Parquet, never rewritten.

Layout: ``<raw_dir>/YYYY-MM-DD/<run_id>/`` (UTC date of the fetch) holding one
``<endpoint>[_pNNN][_aN].json`` per HTTP answer, a Parquet copy of each good
body for analysts, and ``manifest.json`` (run id, endpoint, parameters, fetched
at, status, record count, sha256). The manifest is written last: a run without
one, or marked incomplete, is never replayed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import orjson

from pipeline.errors import BronzeError
from pipeline.sources.coingecko.client import ApiResponse

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


def loads(body: bytes):
    """orjson parses bodies ~4x faster than json; json handles what orjson refuses (ints over 64 bits)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="microseconds")


def _file_stem(response: ApiResponse) -> str:
    stem = response.endpoint
    if response.endpoint == "market_chart":
        stem += "_" + response.path.strip("/").split("/")[1]
    if response.page is not None:
        stem += f"_p{response.page:03d}"
    if response.attempt > 1 or response.status != 200:
        stem += f"_a{response.attempt}_{response.status}"
    return stem


def _write_once(path: Path, data: bytes) -> None:
    """Create a file that did not exist; bronze never overwrites."""
    with open(path, "xb") as handle:
        handle.write(data)
    os.chmod(path, 0o444)


def _parquet_table(payload):
    """A table of the body's records; falls back to one JSON text column when types are mixed."""
    import pyarrow as pa  # only writers need pyarrow: replay workers stay small

    rows = payload if isinstance(payload, list) else [payload.get("data", payload) if isinstance(payload, dict) else payload]
    if rows and all(isinstance(r, dict) for r in rows):
        try:
            return pa.Table.from_pylist(rows)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            pass
    return _json_text_table(payload)


def _json_text_table(payload):
    import pyarrow as pa

    rows = payload if isinstance(payload, list) else [payload]
    return pa.table({"record_json": [json.dumps(r, separators=(",", ":")) for r in rows]})


class BronzeWriter:
    """Collects the answers of one run into its own folder."""

    def __init__(self, raw_dir: Path, run_id: str, *, source: str, started_at: datetime, vs_currency: str,
                 top_n: int | None = None, write_parquet: bool = True):
        self.run_id = run_id
        self.top_n = top_n
        self.source = source
        self.started_at = started_at
        self.vs_currency = vs_currency
        self.folder = Path(raw_dir) / started_at.strftime("%Y-%m-%d") / run_id
        self.folder.mkdir(parents=True, exist_ok=False)
        self.entries: list[dict] = []
        self._write_parquet = write_parquet

    def add(self, response: ApiResponse) -> None:
        stem = _file_stem(response)
        _write_once(self.folder / f"{stem}.json", response.body)
        entry = {
            "file": f"{stem}.json",
            "parquet": None,
            "endpoint": response.endpoint,
            "path": response.path,
            "params": response.params,
            "page": response.page,
            "attempt": response.attempt,
            "status": response.status,
            "fetched_at": _iso(response.fetched_at),
            "bytes": len(response.body),
            "sha256": hashlib.sha256(response.body).hexdigest(),
            "records": None,
            "used": False,
        }
        if response.status == 200:
            try:
                payload = json.loads(response.body)
            except (ValueError, UnicodeDecodeError):
                payload = None
                entry["error"] = "body is not valid JSON"
            if payload is not None:
                entry["records"] = len(payload) if isinstance(payload, list) else 1
                entry["used"] = True
                if self._write_parquet:
                    entry["parquet"] = self._write_parquet_copy(stem, payload)
        self.entries.append(entry)

    def _write_parquet_copy(self, stem: str, payload) -> str:
        """Parquet for analysts; a shape pyarrow cannot write (e.g. an empty object) falls back to JSON text."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = self.folder / f"{stem}.parquet"
        try:
            pq.write_table(_parquet_table(payload), path, compression="snappy")
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            path.unlink(missing_ok=True)
            pq.write_table(_json_text_table(payload), path, compression="snappy")
        os.chmod(path, 0o444)
        return path.name

    def finish(self, *, snapshot_at: datetime | None, complete: bool, error: str | None = None) -> Path:
        """Write the manifest, once. Only complete runs are replayed."""
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "run_id": self.run_id,
            "source": self.source,
            "vs_currency": self.vs_currency,
            "top_n": self.top_n,
            "started_at": _iso(self.started_at),
            "snapshot_at": _iso(snapshot_at),
            "complete": complete,
            "error": error,
            "entries": self.entries,
        }
        path = self.folder / MANIFEST
        _write_once(path, json.dumps(manifest, indent=2).encode())
        return path


@dataclass(frozen=True)
class BronzeRun:
    """A run's folder and manifest, read back for replay."""

    folder: Path
    manifest: dict

    @property
    def run_id(self) -> str:
        return self.manifest["run_id"]

    @property
    def source(self) -> str:
        return self.manifest["source"]

    @property
    def top_n(self) -> int | None:
        return self.manifest.get("top_n")

    @property
    def vs_currency(self) -> str:
        return self.manifest.get("vs_currency", "usd")

    @property
    def snapshot_at(self) -> datetime:
        return datetime.fromisoformat(self.manifest["snapshot_at"])

    def _read(self, entry: dict) -> bytes:
        path = self.folder / entry["file"]
        try:
            body = path.read_bytes()
        except FileNotFoundError:
            raise BronzeError(f"bronze file missing: {path}") from None
        if hashlib.sha256(body).hexdigest() != entry["sha256"]:
            raise BronzeError(f"bronze file changed since it was written (sha256 mismatch): {path}")
        return body

    def used_entries(self, endpoint: str) -> list[dict]:
        entries = [e for e in self.manifest["entries"] if e["endpoint"] == endpoint and e.get("used")]
        return sorted(entries, key=lambda e: (e.get("page") or 0, e["attempt"]))

    @property
    def markets_record_count(self) -> int:
        """Records in the run's markets bodies, from the manifest (no file is read)."""
        return sum(e.get("records") or 0 for e in self.used_entries("markets"))

    def markets_records(self) -> list:
        """All /coins/markets records of the run, in page order."""
        records: list = []
        for entry in self.used_entries("markets"):
            records.extend(loads(self._read(entry)))
        return records

    def global_body(self) -> dict | None:
        entries = self.used_entries("global")
        return loads(self._read(entries[-1])) if entries else None

    def market_charts(self) -> Iterator[tuple[str, dict]]:
        for entry in self.used_entries("market_chart"):
            yield entry["path"].strip("/").split("/")[1], loads(self._read(entry))


def list_runs(raw_dir: Path, *, include_incomplete: bool = False) -> list[BronzeRun]:
    """Every bronze run on disk, oldest snapshot first (ties by run id)."""
    runs = []
    for manifest_path in Path(raw_dir).glob(f"*/*/{MANIFEST}"):
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise BronzeError(f"unreadable bronze manifest {manifest_path}: {exc}") from exc
        if manifest.get("complete") or include_incomplete:
            runs.append(BronzeRun(manifest_path.parent, manifest))
    return sorted(runs, key=lambda r: (r.manifest.get("snapshot_at") or "", r.run_id))


def find_run(raw_dir: Path, run_id: str) -> BronzeRun:
    for manifest_path in Path(raw_dir).glob(f"*/{run_id}/{MANIFEST}"):
        return BronzeRun(manifest_path.parent, json.loads(manifest_path.read_text()))
    raise BronzeError(f"no bronze manifest for run {run_id} under {raw_dir}")


def remove_folder(folder: Path) -> None:
    """Retention only: bronze files are read-only, so make them writable first."""
    for path in folder.rglob("*"):
        os.chmod(path, 0o644)
    shutil.rmtree(folder)
