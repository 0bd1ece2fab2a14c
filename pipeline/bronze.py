"""Bronze: every response body exactly as received, as JSON and Parquet, never rewritten.

Layout: ``<raw_dir>/YYYY-MM-DD/<run_id>/`` (UTC date of the fetch) holding one
``<endpoint>[_<key>][_pNNN][_aN].json`` per answer, a Parquet copy of each good
body for analysts, and ``manifest.json`` (run id, provider, endpoint, parameters,
fetched at, status, record count, sha256 and size of each body and of its Parquet
copy). Endpoint names and keys are the provider's (:mod:`pipeline.providers.base`):
bronze knows no provider, and reads a run's bodies by role through the provider
its manifest names (``coingecko`` for runs kept before manifests named one).
The manifest is written last: a run without one, or marked incomplete, is never
replayed.

Bronze lives in a :class:`pipeline.storage.Store`: the local ``DATA_DIR/raw`` or an
object store (``BRONZE_URL=s3://bucket/prefix``), with the same layout. Functions
here take either a store or a local folder (a Path means that folder). Every file
is written atomically (:mod:`pipeline.atomic` locally, one PUT per object on an
object store): a full disk or a killed process leaves whole files or none, never
a truncated one under its final name. Damage that happens anyway (old runs, a
disk fault, a hand edit) never blocks the other runs: :func:`scan_runs` returns the readable runs and,
apart, the damaged ones with a one-line reason; :func:`check_run` compares a
run's files with its manifest.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import pickle
import re
import sys
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path, PurePath
from typing import Any, overload

import orjson

from pipeline.errors import BronzeError, ConfigError
from pipeline.providers.base import COINS, DEFAULT_PROVIDER, HISTORY, TOTALS, Body, Json, Provider, Record
from pipeline.providers.registry import get_provider
from pipeline.storage import LocalStore, Store

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
#: 2: entries also record ``parquet_bytes`` and ``parquet_sha256`` (version 1 manifests stay valid).
#: 3: the manifest records its ``provider``, entries their ``key`` (older manifests read as CoinGecko's).
#: Entries may also say ``parquet_exact``: the copy holds every record's every key with its JSON type
#: (no true/false in the body; an integer beyond 2**53 among floats is its float, as silver reads it),
#: so replay reads the copy without reading the body to check it.
MANIFEST_VERSION = 3

#: Providers whose coin records are their bodies as sent, so a body's Parquet copy holds the records.
RECORDS_AS_SENT = frozenset({DEFAULT_PROVIDER})


def _has_json_bool(body: bytes) -> bool:
    """Whether a JSON body holds a true/false value (after ``:``, ``,`` or ``[``; a coin called
    "true-usd" is not one). bytes.find is memchr-fast; a regex over every byte was 2 ms a body."""
    for word in (b"true", b"false"):
        at = body.find(word)
        while at >= 0:
            i = at - 1
            while i >= 0 and body[i] in b" \t\r\n":
                i -= 1
            if i >= 0 and body[i] in b":,[":
                return True
            at = body.find(word, at + 1)
    return False


#: A manifest entry, as written and read back (JSON).
Entry = dict[str, Any]


def loads(body: bytes) -> Json:
    """orjson parses bodies ~4x faster than json; json handles what orjson refuses (ints over 64 bits)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="microseconds")


def _file_stem(response: Body) -> str:
    stem = response.endpoint
    if response.key is not None:
        stem += "_" + response.key
    if response.page is not None:
        stem += f"_p{response.page:03d}"
    if response.attempt > 1 or response.status != 200:
        stem += f"_a{response.attempt}_{response.status}"
    return stem


#: Where bronze is: a store, or a local folder (what every caller passed before object stores).
Root = Store | Path | str


def as_store(raw: Root) -> Store:
    """``raw`` as a store (a path is a local folder)."""
    return raw if isinstance(raw, Store) else LocalStore(Path(raw))


def _write_once(store: Store, path: PurePath, data: bytes | memoryview, what: str = "file") -> None:
    """Create a read-only file that did not exist, atomically; bronze never overwrites.

    FileExistsError when the name is taken; any other OSError (a full disk) becomes
    a BronzeError naming the file, and nothing is left under ``path``.
    """
    try:
        store.write_once(path, data)
    except FileExistsError:
        raise
    except OSError as exc:
        raise BronzeError(f"could not write bronze {what} {store.location(path)}: {exc.strerror or exc}") from exc


def _parquet_table(payload: Json) -> Any:  # a pyarrow.Table (pyarrow is untyped)
    """A table of the body's records; falls back to one JSON text column when types are mixed."""
    import pyarrow as pa  # only writers need pyarrow: replay workers stay small

    rows = (
        payload
        if isinstance(payload, list)
        else [payload.get("data", payload) if isinstance(payload, dict) else payload]
    )
    untypable = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError)
    if rows and all(isinstance(r, dict) for r in rows):
        try:
            return pa.Table.from_pylist(rows)
        except untypable:
            pass
        try:  # an integer pyarrow will not put in a column of floats: the float silver reads it as
            return pa.Table.from_pylist(_big_ints_as_floats(rows))
        except untypable:
            pass
    return _json_text_table(payload)


#: Integers beyond this are not all exact as float64, and pyarrow refuses them in a column of floats.
_EXACT_FLOAT_INT = 2**53


def _big_ints_as_floats(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records with each top-level integer beyond 2**53 as its float (OverflowError past float's range).

    CoinGecko sends some supplies as such integers among floats (156124856092293500): one in a page
    made its whole copy JSON text, and one such page sent a whole-market snapshot (68 pages) down
    replay's JSON path. Silver reads every number as a float64, so the copy keeps what silver reads.
    """

    def widened(value: Any) -> Any:
        return float(value) if type(value) is int and abs(value) > _EXACT_FLOAT_INT else value

    return [{key: widened(value) for key, value in row.items()} for row in rows]


def _json_text_table(payload: Json) -> Any:
    import pyarrow as pa

    rows = payload if isinstance(payload, list) else [payload]
    return pa.table({"record_json": [json.dumps(r, separators=(",", ":")) for r in rows]})


def _every_key_a_column(payload: Json, columns: list[str]) -> bool:
    """Whether every record is an object whose keys are all columns (pyarrow takes the columns from
    the first record: a key only later records have would be missing from the copy)."""
    if not isinstance(payload, list) or "record_json" in columns:
        return False
    names = set(columns)
    return all(isinstance(record, dict) and record.keys() <= names for record in payload)


class BronzeWriter:
    """Collects the answers of one run into its own folder."""

    def __init__(
        self,
        raw_dir: Root,
        run_id: str,
        *,
        source: str,
        started_at: datetime,
        vs_currency: str,
        top_n: int | None = None,
        write_parquet: bool = True,
        provider: str = DEFAULT_PROVIDER,
    ) -> None:
        """``source``: why the run was made (api, sample, import, backfill, classes); ``provider``:
        whose bodies it keeps (the folder under pipeline/providers/)."""
        self.run_id = run_id
        self.top_n = top_n
        self.source = source
        self.provider = provider
        self.started_at = started_at
        self.vs_currency = vs_currency
        self.store = as_store(raw_dir)
        self.store.check()
        self.folder = self.store.root / started_at.strftime("%Y-%m-%d") / run_id
        try:
            self.store.make_folder(self.folder)
        except FileExistsError:
            raise
        except OSError as exc:
            location = self.store.location(self.folder)
            raise BronzeError(f"could not create bronze folder {location}: {exc.strerror or exc}") from exc
        self.entries: list[Entry] = []
        self._write_parquet = write_parquet

    def add(self, response: Body) -> None:
        stem = _file_stem(response)
        _write_once(self.store, self.folder / f"{stem}.json", response.body)
        entry: Entry = {
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
        if response.key is not None:
            entry["key"] = response.key
        payload: Json = None
        if response.status == 200:
            try:
                payload = json.loads(response.body)
            except (ValueError, UnicodeDecodeError):
                payload = None
                entry["error"] = "body is not valid JSON"
            if payload is not None:
                entry["records"] = len(payload) if isinstance(payload, list) else 1
                entry["used"] = True
        # Listed before its Parquet copy is written: if that fails (a full disk), the
        # incomplete run's manifest still names the body that is on disk.
        self.entries.append(entry)
        if entry["used"] and self._write_parquet:
            name, data, typed = self._parquet_copy(stem, payload)
            _write_once(self.store, self.folder / name, data)
            entry.update(parquet=name, parquet_bytes=len(data), parquet_sha256=hashlib.sha256(data).hexdigest())
            if typed and not _has_json_bool(response.body):
                # Checked once here, so replay need not read the body again to trust the copy.
                entry["parquet_exact"] = True

    @staticmethod
    def _parquet_copy(stem: str, payload: Json) -> tuple[str, memoryview, bool]:
        """Parquet for analysts, encoded in memory (then written atomically like the body), and
        whether it is typed with a column for every key of every record (not the JSON-text form).

        A shape pyarrow cannot write (e.g. an empty object) falls back to JSON text.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        def encode(table: Any) -> memoryview:
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink, compression="snappy")
            return memoryview(sink.getvalue())

        try:
            table = _parquet_table(payload)
            data = encode(table)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            return f"{stem}.parquet", encode(_json_text_table(payload)), False
        return f"{stem}.parquet", data, _every_key_a_column(payload, table.column_names)

    def finish(
        self,
        *,
        snapshot_at: datetime | None,
        complete: bool,
        error: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> PurePath:
        """Write the manifest, once and last: it is the run's commit. Only complete runs are replayed. ``extra``: more
        top-level fields (e.g. ``fetched_at`` and ``data_time_basis`` beside the data's ``snapshot_at``)."""
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "run_id": self.run_id,
            "source": self.source,
            "provider": self.provider,
            "vs_currency": self.vs_currency,
            "top_n": self.top_n,
            "started_at": _iso(self.started_at),
            "snapshot_at": _iso(snapshot_at),
            "complete": complete,
            "error": error,
            **(extra or {}),
            "entries": self.entries,
        }
        path = self.folder / MANIFEST
        _write_once(self.store, path, json.dumps(manifest, indent=2).encode(), "manifest")
        return path

    @property
    def finished(self) -> bool:
        """Whether the manifest is written (by this writer or, after a crash, found in the store)."""
        return self.store.is_file(self.folder / MANIFEST)

    def read_back(self) -> BronzeRun:
        """The finished run, its manifest read back from the store."""
        manifest: dict[str, Any] = json.loads(self.store.read_bytes(self.folder / MANIFEST))
        return BronzeRun.at(self.folder, manifest, self.store)


@dataclass(frozen=True)
class PageCopy:
    """One coins page of a run: its manifest entry and, when it stands for the body, its Parquet copy."""

    entry: Entry
    #: A pyarrow Table of the asked columns, or None: read this page's JSON (``BronzeRun.page_records``).
    table: Any


#: Shared key tuples of listed manifests (one per shape of manifest, not one per run).
_KEY_TUPLES: dict[tuple[str, ...], tuple[str, ...]] = {}


def _shared_tuple(names: tuple[str, ...]) -> tuple[str, ...]:
    return _KEY_TUPLES.setdefault(names, names)


class ListedManifest(Mapping[str, Any]):
    """A listed run's manifest, kept small: its top-level fields held, its lists and objects (the
    entries: most of what a parsed manifest takes) read again from the store when asked for.

    A replay lists every run before loading any; 37,586 runs' parsed manifests took 118 MB (3.2 KB a
    run) and grew the replay's memory with the history kept. What is read again must be the manifest
    that was listed (its sha256 is kept): bronze is never rewritten, so a change is damage.
    """

    __slots__ = ("_names", "_values", "_lazy", "_store", "_parent", "_name", "_sha256", "coin_records")

    def __init__(
        self, manifest: Mapping[str, Any], store: Store, parent: PurePath, name: str, sha256: bytes, coin_records: int
    ):
        held = [(k, v) for k, v in manifest.items() if v is None or isinstance(v, str | int | float)]
        # One text object for equal values: started_at and snapshot_at are most often one text, and
        # the run id is the folder's name (which the listing holds anyway).
        same: dict[object, object] = {name: name}
        self._names = _shared_tuple(tuple(sys.intern(k) for k, _ in held))
        self._values = tuple(same.setdefault(v, v) for _, v in held)
        self._lazy = _shared_tuple(tuple(sys.intern(k) for k in manifest if k not in self._names))
        self._store, self._parent, self._name, self._sha256 = store, parent, name, sha256
        #: Records in the run's coins bodies (``BronzeRun.markets_record_count``), counted when listed.
        self.coin_records = coin_records

    @classmethod
    def of_parts(
        cls,
        shape: tuple[tuple[str, ...], tuple[str, ...]],
        values: tuple[Any, ...],
        store: Store,
        parent: PurePath,
        sha256: bytes,
        coin_records: int,
    ) -> ListedManifest:
        """A listed manifest again from what :class:`RunListing` packed of it (``shape``: its held
        and its lazy field names)."""
        manifest = cls.__new__(cls)
        manifest._names, manifest._lazy = shape
        manifest._values = values
        manifest._store, manifest._parent, manifest._sha256 = store, parent, sha256
        manifest._name = values[manifest._names.index("run_id")]
        manifest.coin_records = coin_records
        return manifest

    @property
    def parts(self) -> tuple[tuple[tuple[str, ...], tuple[str, ...]], tuple[Any, ...], bytes, int]:
        """(shape, values, sha256, coin_records): what :meth:`of_parts` takes back."""
        return (self._names, self._lazy), self._values, self._sha256, self.coin_records

    def __getitem__(self, key: str) -> Any:
        if key in self._names:
            return self._values[self._names.index(key)]
        if key in self._lazy:
            return self.read()[key]
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return key in self._names or key in self._lazy

    def __iter__(self) -> Iterator[str]:
        yield from self._names
        yield from self._lazy

    def __len__(self) -> int:
        return len(self._names) + len(self._lazy)

    def read(self) -> dict[str, Any]:
        """The whole manifest, read again; BronzeError when it is not the one listed."""
        path = self._parent / self._name / MANIFEST
        location = self._store.location(path)
        try:
            data = self._store.read_bytes(path)
        except OSError as exc:
            raise BronzeError(f"{location} unreadable since the run was listed: {_one_line(exc)}") from exc
        if hashlib.sha256(data).digest() != self._sha256:
            raise BronzeError(f"{location} changed since the run was listed (sha256 mismatch)")
        manifest: dict[str, Any] = json.loads(data, object_pairs_hook=_shared_strings)
        return manifest


@dataclass(frozen=True, slots=True)
class BronzeRun:
    """A run's folder and manifest, read back for replay.

    ``store`` is where the folder is (None: ``folder`` is a local path). It pickles as its
    location, never as a connection: a replay worker reads the run's files from the store itself.
    A listed run's manifest is a :class:`ListedManifest` (see :meth:`loaded`).

    The folder is kept as its parent (the date folder, one object for all of a day's runs) and its
    name: a replay lists every run before loading one, and a path object of its own took ~300 bytes
    a run (12 MB of 40,000 runs). Make one with :meth:`at`.
    """

    parent: PurePath
    name: str
    manifest: Mapping[str, Any]
    store: Store | None = field(default=None, compare=False)

    @classmethod
    def at(cls, folder: PurePath, manifest: Mapping[str, Any], store: Store | None = None) -> BronzeRun:
        """The run in ``folder``."""
        return cls(folder.parent, folder.name, manifest, store)

    @property
    def folder(self) -> PurePath:
        """The run's folder: ``<raw>/<date>/<run id>``."""
        return self.parent / self.name

    @property
    def files(self) -> Store:
        return self.store if self.store is not None else LocalStore(Path(self.folder))

    @property
    def location(self) -> str:
        """The run folder as a person reads it (an ``s3://`` URL on an object store)."""
        return self.files.location(self.folder)

    def with_manifest(self, manifest: Mapping[str, Any]) -> BronzeRun:
        return replace(self, manifest=manifest)

    def loaded(self) -> BronzeRun:
        """This run with its whole manifest in memory: read once for a run about to be loaded,
        instead of once for each of its entries' questions (a listed run holds only the top fields)."""
        return replace(self, manifest=self.manifest.read()) if isinstance(self.manifest, ListedManifest) else self

    def listed(self, manifest_sha256: bytes) -> BronzeRun:
        """This run kept small for a listing (:class:`ListedManifest`); ``manifest_sha256``: of its manifest file."""
        if isinstance(self.manifest, ListedManifest):
            return self
        store = self.store if self.store is not None else LocalStore(Path(self.folder))
        small = ListedManifest(self.manifest, store, self.parent, self.name, manifest_sha256, self.markets_record_count)
        return replace(self, manifest=small, store=store)

    @property
    def run_id(self) -> str:
        return str(self.manifest["run_id"])

    @property
    def source(self) -> str:
        """Why the run was made (api, sample, import, backfill, classes): its origin, not its provider."""
        return str(self.manifest["source"])

    @property
    def provider(self) -> str:
        """Whose bodies the run keeps; runs kept before manifests named one are CoinGecko's."""
        return str(self.manifest.get("provider") or DEFAULT_PROVIDER)

    @property
    def top_n(self) -> int | None:
        value = self.manifest.get("top_n")
        return value if _is_int(value) else None

    @property
    def vs_currency(self) -> str:
        return str(self.manifest.get("vs_currency", "usd"))

    @property
    def snapshot_at(self) -> datetime:
        return datetime.fromisoformat(self.manifest["snapshot_at"])

    def _provider(self) -> Provider:
        return get_provider(self.provider)

    def _read(self, entry: Entry) -> bytes:
        path = self.folder / entry["file"]
        try:
            body = self.files.read_bytes(path)
        except FileNotFoundError:
            raise BronzeError(f"bronze file missing: {self.files.location(path)}") from None
        if hashlib.sha256(body).hexdigest() != entry["sha256"]:
            location = self.files.location(path)
            raise BronzeError(f"bronze file changed since it was written (sha256 mismatch): {location}")
        return body

    def used_entries(self, endpoint: str | None) -> list[Entry]:
        """The entries of ``endpoint`` a replay reads, in page (then attempt) order."""
        entries = [e for e in self.manifest["entries"] if e["endpoint"] == endpoint and e.get("used")]
        return sorted(entries, key=lambda e: (e.get("page") or 0, e["attempt"]))

    def role_entries(self, role: str) -> list[Entry]:
        """The used entries of the provider's endpoint for ``role`` (pipeline.providers.base.COINS, ...)."""
        return self.used_entries(self._provider().endpoints.get(role))

    @property
    def markets_record_count(self) -> int:
        """Records in the run's coins bodies, from the manifest (no file is read)."""
        if isinstance(self.manifest, ListedManifest):
            return self.manifest.coin_records
        return sum(e.get("records") or 0 for e in self.role_entries(COINS))

    def markets_records(self) -> list[Record]:
        """All coin records of the run, in page order, in the silver contract (the provider maps them)."""
        records: list[Record] = []
        for entry in self.role_entries(COINS):
            records.extend(self.page_records(entry))
        return records

    def page_records(self, entry: Entry) -> list[Record]:
        """The coin records of one coins body (one of ``role_entries(COINS)``), checked against its sha256."""
        return self._provider().coin_records(loads(self._read(entry)))

    def markets_pages(self, keys: list[str]) -> list[PageCopy] | None:
        """Each coins page of the run with its bronze Parquet copy (only ``keys``' columns) when that
        copy stands for the body, checked against the manifest's sha256; None when the provider maps
        its bodies (only records kept as sent are in a copy).

        A page's copy cannot stand (``table`` None: read that page's JSON) when it is missing or
        changed, was written without a hash, holds the JSON-text fallback, or has another row count;
        or where pyarrow's typing lost what silver's rules read: a ``true``/``false`` in the body (a
        bool among floats is written as 1.0/0.0), or one of ``keys`` named in the body but not a
        column (pyarrow took the columns from the first record). One such page leaves the others
        standing: one malformed record must not send a whole-market snapshot's 68 pages through JSON.
        """
        if self.provider not in RECORDS_AS_SENT:
            return None
        return [PageCopy(entry, self._page_copy(entry, keys)) for entry in self.role_entries(COINS)]

    def _page_copy(self, entry: Entry, keys: list[str]) -> Any | None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        name, digest = entry.get("parquet"), entry.get("parquet_sha256")
        if not name or not digest:
            return None
        try:
            data = self.files.read_bytes(self.folder / name)
        except OSError:
            return None
        if hashlib.sha256(data).hexdigest() != digest:
            log.warning(
                "bronze Parquet copy changed since it was written (sha256 mismatch): %s",
                self.files.location(self.folder / name),
            )
            return None
        # The writer checked the body once (``parquet_exact``); an older copy's body is read to check it here.
        body = None
        if entry.get("parquet_exact") is not True:
            try:  # read for the checks below only: the records' text comes from markets_records (verified)
                body = self.files.read_bytes(self.folder / entry["file"])
            except OSError:
                return None
            if _has_json_bool(body):
                return None
        try:
            handle = pq.ParquetFile(pa.BufferReader(data))
            present = set(handle.schema_arrow.names)
            if "record_json" in present:
                return None
            if body is not None and any(key not in present and f'"{key}"'.encode() in body for key in keys):
                return None
            table = handle.read(columns=[key for key in keys if key in present], use_threads=False)
        except (pa.ArrowException, OSError):
            return None
        if table.num_rows != entry.get("records"):
            return None
        return table

    def global_body(self) -> Json:
        """The run's market-wide figures in the silver contract's shape (/global's), or None."""
        entries = self.role_entries(TOTALS)
        return self._provider().market_totals(loads(self._read(entries[-1]))) if entries else None

    def market_charts(self) -> Iterator[tuple[str, Json]]:
        """(key, body) of each history body: a coin id and its daily prices, caps and volumes."""
        provider = self._provider()
        for entry in self.role_entries(HISTORY):
            key = _entry_key(entry, provider)
            if key is not None:
                yield key, loads(self._read(entry))


def _entry_key(entry: Entry, provider: Provider) -> str | None:
    key = entry.get("key")
    if isinstance(key, str):
        return key
    path = entry.get("path")
    return provider.legacy_key(entry["endpoint"], path) if isinstance(path, str) else None


# ---- finding runs, and telling damaged ones apart ------------------------------------

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class RunListing(Sequence[BronzeRun]):
    """Listed runs packed into one buffer, oldest snapshot first; a run is built when it is asked for
    (an index, an iteration) and let go after.

    A replay lists every run before loading one. As objects a listed run took ~520 bytes (its
    BronzeRun, manifest, values tuple, texts and digest), ~650 with what their scattered allocations
    cost: 26 MB of the replay's memory at 40,000 runs (10M records), most of its growth with the
    history kept. Packed (a pickle of its held values, and its digest) it takes a third of that, in
    three buffers. Slices, :meth:`select` and :meth:`with_snapshot_times` are views of the same buffers.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._parents: list[PurePath] = []
        self._parent_numbers: dict[PurePath, int] = {}
        self._shapes: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
        self._shape_numbers: dict[tuple[tuple[str, ...], tuple[str, ...]], int] = {}
        self._records = bytearray()
        self._ends = array("Q")
        self._digests = bytearray()
        #: The records this listing holds, in its order.
        self._rows: Sequence[int] = range(0)
        #: Record -> the snapshot time it is replayed at (see ``flow._distinct_snapshot_times``).
        self._times: dict[int, str] = {}

    def add(self, run: BronzeRun, manifest_sha256: bytes) -> None:
        """Append a run (kept as :meth:`BronzeRun.listed` keeps it); only while the listing is built."""
        listed = run.listed(manifest_sha256).manifest
        assert isinstance(listed, ListedManifest)
        shape, values, digest, coin_records = listed.parts
        parent = self._parent_numbers.setdefault(run.parent, len(self._parents))
        if parent == len(self._parents):
            self._parents.append(run.parent)
        number = self._shape_numbers.setdefault(shape, len(self._shapes))
        if number == len(self._shapes):
            self._shapes.append(shape)
        self._records += pickle.dumps((parent, number, coin_records, values), protocol=pickle.HIGHEST_PROTOCOL)
        self._ends.append(len(self._records))
        self._digests += digest
        self._rows = range(len(self._ends))

    def _run(self, record: int) -> BronzeRun:
        start = self._ends[record - 1] if record else 0
        parent_number, shape_number, coin_records, values = pickle.loads(self._records[start : self._ends[record]])
        parent = self._parents[parent_number]
        sha256 = bytes(self._digests[record * 32 : record * 32 + 32])
        manifest = ListedManifest.of_parts(
            self._shapes[shape_number], values, self._store, parent, sha256, coin_records
        )
        run = BronzeRun(parent, manifest["run_id"], manifest, self._store)
        if record in self._times:
            run = run.with_manifest({**manifest, "snapshot_at": self._times[record]})
        return run

    def _view(self, rows: Sequence[int], times: dict[int, str] | None = None) -> RunListing:
        view = copy.copy(self)
        view._rows = rows
        view._times = self._times if times is None else times
        return view

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> BronzeRun: ...
    @overload
    def __getitem__(self, index: slice) -> RunListing: ...
    def __getitem__(self, index: int | slice) -> BronzeRun | RunListing:
        if isinstance(index, slice):
            return self._view(self._rows[index])
        return self._run(self._rows[index])

    def __iter__(self) -> Iterator[BronzeRun]:
        for record in self._rows:
            yield self._run(record)

    def sorted_by(self, key: Callable[[BronzeRun], Any]) -> RunListing:
        """This listing ordered by ``key`` of each run."""
        return self._view(array("Q", sorted(self._rows, key=lambda record: key(self._run(record)))))

    def select(self, keep: Callable[[BronzeRun], bool]) -> RunListing:
        """The runs ``keep`` says yes to, in this listing's order."""
        return self._view(array("Q", (record for record in self._rows if keep(self._run(record)))))

    def with_snapshot_times(self, times: Mapping[int, str]) -> RunListing:
        """This listing with the runs at ``times``' positions replayed at other snapshot times (ISO text)."""
        return self._view(self._rows, {**self._times, **{self._rows[at]: when for at, when in times.items()}})


@dataclass(frozen=True)
class DamagedRun:
    """A run folder that cannot be replayed as it is, and why (one line).

    ``incomplete`` is True for a folder without a manifest: its run stopped before
    finishing (killed, or the disk filled up). That is expected, not damage.
    """

    folder: PurePath
    run_id: str | None
    reason: str
    incomplete: bool = False
    store: Store | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        """The run id, else the folder's name (which is the run id for every folder BronzeWriter makes)."""
        return self.run_id or self.folder.name

    @property
    def location(self) -> str:
        return str(self.folder) if self.store is None else self.store.location(self.folder)

    def line(self) -> str:
        kind = "incomplete" if self.incomplete else "damaged"
        return f"{kind} bronze run {self.name} ({self.location}): {self.reason}"


def _one_line(exc: BaseException | str, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _plain_name(value: object) -> bool:
    """A file name inside the run folder (no path, so a manifest cannot point outside it)."""
    return (
        isinstance(value, str)
        and value not in ("", ".", "..")
        and "/" not in value
        and "\\" not in value
        and "\0" not in value
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_time(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    return True


def _entry_problem(entry: object, provider: Provider) -> str | None:
    if not isinstance(entry, dict):
        return "not an object"
    name = entry.get("file")
    if not _plain_name(name):
        return "no valid file name"
    if not isinstance(entry.get("sha256"), str) or not _HEX64.match(entry["sha256"]):
        return f"{name}: no valid sha256"
    if not isinstance(entry.get("endpoint"), str) or not _is_int(entry.get("attempt")):
        return f"{name}: no endpoint or attempt"
    if not isinstance(entry.get("used", False), bool):
        return f"{name}: 'used' is not true or false"
    for key in ("bytes", "records", "page", "parquet_bytes"):
        if entry.get(key) is not None and not (_is_int(entry[key]) and entry[key] >= 0):
            return f"{name}: {key} is not a count"
    if entry.get("parquet") is not None and not _plain_name(entry["parquet"]):
        return f"{name}: no valid Parquet file name"
    if entry.get("parquet_sha256") is not None and not (
        isinstance(entry["parquet_sha256"], str) and _HEX64.match(entry["parquet_sha256"])
    ):
        return f"{name}: no valid parquet_sha256"
    if not isinstance(entry.get("parquet_exact", False), bool):
        return f"{name}: 'parquet_exact' is not true or false"
    if entry.get("key") is not None and not _plain_name(entry["key"]):
        return f"{name}: key is not a plain name"
    if (
        entry["endpoint"] == provider.endpoints.get(HISTORY)
        and entry.get("used")
        and _entry_key(entry, provider) is None
    ):
        return f"{name}: a {entry['endpoint']} entry without its key (the coin it is about)"
    return None


def manifest_problem(manifest: object, folder: PurePath) -> str | None:
    """Why ``manifest`` (parsed JSON) cannot describe the run in ``folder``; None when it can."""
    if not isinstance(manifest, dict):
        kind = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}.get(
            type(manifest), "null" if manifest is None else type(manifest).__name__
        )
        return f"manifest.json holds a JSON {kind}, not an object"
    run_id = manifest.get("run_id")
    if not isinstance(run_id, str) or not run_id:
        return "manifest.json has no run_id"
    if run_id != folder.name:
        return f"manifest.json is for run {run_id!r}, not for its folder {folder.name!r}"
    if not isinstance(manifest.get("source"), str):
        return "manifest.json has no source"
    name = manifest.get("provider", DEFAULT_PROVIDER)
    if not isinstance(name, str):
        return "manifest.json: provider is not text"
    try:
        provider = get_provider(name)
    except ConfigError:
        return f"manifest.json names provider {name!r}, which is not installed here"
    if not isinstance(manifest.get("complete"), bool):
        return "manifest.json: 'complete' is not true or false"
    for key in ("snapshot_at", "started_at"):
        if manifest.get(key) is not None and not _is_time(manifest[key]):
            return f"manifest.json: {key} is not a timestamp ({_one_line(repr(manifest[key]), 40)})"
    if manifest["complete"] and manifest.get("snapshot_at") is None:
        return "manifest.json says complete but has no snapshot_at"
    if manifest.get("top_n") is not None and not _is_int(manifest["top_n"]):
        return "manifest.json: top_n is not a number"
    if manifest.get("vs_currency") is not None and not isinstance(manifest["vs_currency"], str):
        return "manifest.json: vs_currency is not text"
    entries = manifest.get("entries")
    if not isinstance(entries, list):
        return "manifest.json has no list of entries"
    for number, entry in enumerate(entries, start=1):
        problem = _entry_problem(entry, provider)
        if problem:
            return f"manifest.json entry {number}: {problem}"
    return None


def _read_manifest(store: Store, folder: PurePath) -> tuple[bytes | None, DamagedRun | None]:
    """The bytes of the manifest in ``folder``, or why there are none (exactly one of the two is set)."""
    path = folder / MANIFEST
    try:
        return store.read_bytes(path), None
    except FileNotFoundError:
        files = store.files(folder)
        return None, DamagedRun(
            folder,
            None,
            f"no {MANIFEST}: the run stopped before finishing ({len(files)} file(s) kept)",
            incomplete=True,
            store=store,
        )
    except OSError as exc:
        return None, DamagedRun(folder, None, f"{MANIFEST} unreadable: {_one_line(exc.strerror or exc)}", store=store)


def _shared_strings(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A manifest object whose keys and short names ("markets", "/coins/markets", "usd", file names)
    are shared with every other manifest's. Times and run ids (over 20 characters) are not: each is
    one run's, and interning them grew the interpreter's table of interned texts with every run listed."""
    return {sys.intern(k): sys.intern(v) if isinstance(v, str) and len(v) <= 20 else v for k, v in pairs}


def _parse_run(store: Store, folder: PurePath, data: bytes) -> tuple[BronzeRun | None, DamagedRun | None]:
    """The run whose manifest is ``data``, or why it cannot be replayed."""
    if not data.strip():
        return None, DamagedRun(folder, None, f"{MANIFEST} is empty ({len(data)} bytes)", store=store)
    try:
        manifest = json.loads(data, object_pairs_hook=_shared_strings)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, DamagedRun(folder, None, f"{MANIFEST} is not valid JSON ({_one_line(exc, 120)})", store=store)
    problem = manifest_problem(manifest, folder)
    if problem:
        run_id = manifest.get("run_id") if isinstance(manifest, dict) else None
        return None, DamagedRun(folder, run_id if isinstance(run_id, str) and run_id else None, problem, store=store)
    return BronzeRun.at(folder, manifest, store), None


def _run_order(run: BronzeRun) -> tuple[str, str]:
    return run.manifest.get("snapshot_at") or "", run.run_id


def run_folders(raw_dir: Root) -> Iterator[PurePath]:
    """Every ``<date>/<run id>`` folder under the bronze root, in path order, a date folder at a time
    (40,000 runs' paths at once took 12 MB, and left the replay's memory fragmented for its whole run)."""
    store = as_store(raw_dir)
    store.check()
    for day in store.folders(store.root):
        yield from store.folders(day)


def scan_runs(raw_dir: Root, *, include_incomplete: bool = False) -> tuple[list[BronzeRun], list[DamagedRun]]:
    """Every run folder under ``raw_dir``: the readable runs and, apart, the ones that are not.

    Runs come oldest snapshot first (ties by run id), each kept small (:class:`ListedManifest`);
    with ``include_incomplete`` also the runs whose manifest says they did not finish (a failed
    fetch). Damaged runs (an unreadable, empty, non-JSON or wrong-shaped manifest) and folders
    without a manifest (``incomplete=True``) come back as :class:`DamagedRun`, by folder. Reads
    manifests only: :func:`check_run` checks a run's files. Never raises for what is on disk.
    """
    runs, damaged = _scan(raw_dir, include_incomplete=include_incomplete, checked=False)
    return list(runs), damaged


def _scan(raw_dir: Root, *, include_incomplete: bool, checked: bool) -> tuple[RunListing, list[DamagedRun]]:
    """scan_runs; ``checked``: each run's replayed bodies are checked (check_run) while its whole
    manifest is in hand, and a run that fails is damaged."""
    store = as_store(raw_dir)
    runs = RunListing(store)
    damaged: list[DamagedRun] = []
    for folder in run_folders(store):
        data, problem = _read_manifest(store, folder)
        run = None
        if data is not None:
            run, problem = _parse_run(store, folder, data)
        if run is not None and (run.manifest["complete"] or include_incomplete):
            problems = check_run(run, used_only=True) if checked else []
            if problems:
                shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
                damaged.append(DamagedRun(run.folder, run.run_id, shown, store=run.store))
            else:
                runs.add(run, hashlib.sha256(data or b"").digest())
        elif problem is not None:
            damaged.append(problem)
    return runs.sorted_by(_run_order), damaged


def list_runs(raw_dir: Root, *, include_incomplete: bool = False) -> list[BronzeRun]:
    """Every readable bronze run on disk, oldest snapshot first (ties by run id).

    Damaged runs are left out (logged as a warning); :func:`scan_runs` returns them too.
    """
    runs, damaged = scan_runs(raw_dir, include_incomplete=include_incomplete)
    for item in damaged:
        if not item.incomplete:
            log.warning("skipped %s", item.line())
    return runs


def find_run(raw_dir: Root, run_id: str) -> BronzeRun:
    """The run ``run_id`` (its folder ``<raw_dir>/<date>/<run_id>``); BronzeError when it is missing or damaged.

    Looks at the newest date folders first (most look-ups are of a run just written)."""
    store = as_store(raw_dir)
    if _plain_name(run_id):
        for day in reversed(store.folders(store.root)):
            folder = day / run_id
            try:
                data = store.read_bytes(folder / MANIFEST)
            except FileNotFoundError:  # not this day's, or stopped before finishing
                continue
            except OSError as exc:
                raise BronzeError(
                    f"bronze run {run_id}: {MANIFEST} unreadable: {_one_line(exc.strerror or exc)}"
                ) from exc
            run, problem = _parse_run(store, folder, data)
            if run is not None:
                return run
            if problem is not None and not problem.incomplete:
                raise BronzeError(f"bronze run {run_id} is damaged ({store.location(folder)}): {problem.reason}")
    raise BronzeError(f"no bronze manifest for run {run_id} under {store.location()}")


# ---- checking a run's files against its manifest -------------------------------------


def _file_problem(store: Store, path: PurePath, size: object, sha256: str) -> str | None:
    """Why the file at ``path`` is not the one the manifest recorded; None when it is."""
    try:
        found = store.size(path)
    except FileNotFoundError:
        return "missing"
    except IsADirectoryError:
        return "not a regular file"
    except OSError as exc:
        return f"unreadable ({_one_line(exc.strerror or exc)})"
    if _is_int(size) and found != size:
        return f"{found} bytes, the manifest says {size} (truncated or changed)"
    try:
        digest = hashlib.sha256(store.read_bytes(path)).hexdigest()
    except OSError as exc:
        return f"unreadable ({_one_line(exc.strerror or exc)})"
    if digest != sha256:
        return "sha256 mismatch (changed since it was written)"
    return None


def _parquet_problem(store: Store, folder: PurePath, entry: Entry) -> str | None:
    path = folder / entry["parquet"]
    if entry.get("parquet_sha256"):
        return _file_problem(store, path, entry.get("parquet_bytes"), entry["parquet_sha256"])
    # A version-1 manifest recorded no hash: the copy must read and hold the body's records.
    if not store.is_file(path):
        return "missing"
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = pq.read_table(pa.BufferReader(store.read_bytes(path))).num_rows
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many kinds for a garbled file
        return f"not a readable Parquet file ({_one_line(exc, 120)})"
    records = entry.get("records")
    if _is_int(records) and rows != records:
        return f"{rows} rows, the manifest says {records} records"
    return None


def check_run(run: BronzeRun, *, deep: bool = False, used_only: bool = False) -> list[str]:
    """What is wrong with a run's files, one line each; an empty list means healthy.

    Each body must exist with the manifest's size and sha256. ``deep=True`` also
    checks the Parquet copies: their recorded size and sha256, or, for manifests
    older than those fields, that pyarrow reads them and they hold the body's
    record count. ``used_only=True`` checks only the bodies a replay reads (not the
    kept failed attempts). Reads every checked file once; never raises for what is on disk.
    """
    try:
        run = run.loaded()
    except BronzeError as exc:
        return [str(exc)]
    problem = manifest_problem(run.manifest, run.folder)
    if problem:
        return [problem]
    problems = []
    for entry in run.manifest["entries"]:
        if used_only and not entry.get("used"):
            continue
        problem = _file_problem(run.files, run.folder / entry["file"], entry.get("bytes"), entry["sha256"])
        if problem:
            problems.append(f"{entry['file']}: {problem}")
        if deep and entry.get("parquet"):
            problem = _parquet_problem(run.files, run.folder, entry)
            if problem:
                problems.append(f"{entry['parquet']}: {problem}")
    return problems


def healthy_runs(raw_dir: Root, *, include_incomplete: bool = False) -> tuple[RunListing, list[DamagedRun]]:
    """:func:`scan_runs`, with :func:`check_run` (``used_only=True``) on each run: what replay can read safely.

    Returns the runs whose replayed bodies are intact (oldest first, packed: :class:`RunListing`) and every other
    folder as a :class:`DamagedRun`, by folder: unreadable manifests, runs whose bodies are
    missing, truncated or changed (the problems joined into the reason), and folders
    without a manifest (``incomplete=True``, not damage). Reads every used body once.
    """
    runs, damaged = _scan(raw_dir, include_incomplete=include_incomplete, checked=True)
    return runs, sorted(damaged, key=lambda d: str(d.folder))


def remove_folder(folder: PurePath, store: Store | None = None) -> None:
    """Retention only: the run folder and every file in it (local bronze files are read-only: the store
    makes them writable first)."""
    (store or LocalStore(Path(folder))).remove_tree(folder)
