"""The connection records as a Parquet file (`analyze --parquet FILE`): a row per connection,
the record's fields as columns (docs/json.md says what each means), written with pyarrow
from the record's columns (derive/records.py columns) in row groups as connections retire:
memory holds a few row groups at most (one written, in another thread, two waiting for it,
the next gathered: render/output.py Behind), never every record.
DuckDB, pandas and Polars read it.

How the columns differ from the JSON record: times are timestamps (UTC, microseconds);
the endpoints are flat (`client_final_state`, `server_packets`, ...); each endpoint's
transitions are a list of (ts, state, timer, inferred); anomalies and Wireshark's analysis
flags are maps of name to count; a tunnel is its name (records.tunnel_name); `zeek_later`
is an empty list when Zeek saw one connection. `diagnosis_signs`, which the JSON record has
not: the diagnoses whose sign the connection shows (derive/rules.py SIGNS: a refused
connection for refused_burst, a request crossing an idle close for keepalive_race, ...);
whether its service was diagnosed is the result's `diagnoses` to say, from the counts of all.
"""

from collections.abc import Callable
from functools import partial
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pcapstate.derive.records import (
    ROLES,
    ZEEK_FIELDS,
    ZEEK_TIMED,
    Coded,
    ZeekViews,
    address_texts,
)
from pcapstate.derive.texts import Texts, gather, words
from pcapstate.track.slots import STATE_NAMES
from pcapstate.vocab import WIRESHARK_ANALYSIS

#: Connections a row group holds (the last one: what is left). Written in another thread
#: while the next is gathered, smaller groups share the work after the last packet better
#: (the benchmark capture, 12 paired runs: 16,384 against 65,536, 0.16 s less, 11 of 12,
#: peak 390 MiB against 445; 8,192 was 0.19 s slower than 16,384; the file 1 % larger)
ROW_GROUP = 16_384
_STATES, _WS = np.array(STATE_NAMES, object), np.array(list(WIRESHARK_ANALYSIS), object)

_TS = pa.timestamp("us", tz="UTC")
_MOVE = pa.struct([("ts", _TS), ("state", pa.string()), ("timer", pa.bool_()),
                   ("inferred", pa.bool_())])
_ZEEK_KINDS = {"ts": _TS, "orig": pa.string(), "conn_state": pa.string(),
               "history": pa.string(), "duration": pa.float64()}  # the others: int64
_ZEEK = pa.struct([(name, _ZEEK_KINDS.get(name, pa.int64())) for name in ZEEK_FIELDS])
_COUNTS = pa.map_(pa.string(), pa.int64())
_ENDPOINT = (("final_state", pa.string()), ("packets", pa.int64()),
             ("payload_bytes", pa.int64()), ("syn", pa.int64()), ("fin", pa.int64()),
             ("rst", pa.int64()), ("transitions", pa.list_(_MOVE)))

SCHEMA = pa.schema([
    ("id", pa.int64()), ("client", pa.string()), ("server", pa.string()),
    ("roles_from", pa.string()), ("mid_stream", pa.bool_()),
    ("first_ts", _TS), ("last_ts", _TS), ("end", pa.string()), ("closer", pa.string()),
    ("closer_evidence", pa.string()), ("closed_by", pa.string()), ("reset_by", pa.string()),
    *[(f"{role}_{name}", kind) for role in ROLES for name, kind in _ENDPOINT],
    ("anomalies", _COUNTS), ("evicted", pa.bool_()), ("tunnel", pa.string()),
    ("wireshark_analysis", _COUNTS), ("zeek", _ZEEK), ("zeek_later", pa.list_(_ZEEK)),
    ("diagnosis_signs", pa.list_(pa.string())),
])


class ParquetSink:
    """Takes the records' columns a batch at a time (`take`); writes `path` in row groups
    of ROW_GROUP connections; `close` writes what is left and the file's footer."""

    def __init__(self, where: str | BinaryIO) -> None:
        """`where`: a path, or a binary file."""
        # no dictionaries: zstd alone made the benchmark capture's file 27% smaller (6.3
        # MB against 8.6), in 45 MiB less memory (most strings are addresses, all distinct)
        self.writer = pq.ParquetWriter(where, SCHEMA, compression="zstd", use_dictionary=False)
        self.held: list[pa.RecordBatch] = []
        self.rows = 0

    def take(self, cols: dict[str, Any], views: ZeekViews) -> Callable[[], object] | None:
        """A batch: records.columns' `cols`, records.zeek_views' `views` of the same
        connections. Returns the writing of the row groups it completed (pyarrow's, which
        lets go of Python's lock: for another thread, render/output.py Behind), or None."""
        self.held.append(pa.RecordBatch.from_arrays(_arrays(cols, views), schema=SCHEMA))
        self.rows += len(cols["id"])
        if self.rows < ROW_GROUP:
            return None
        return partial(self.writer.write_table, self._taken(self.rows - self.rows % ROW_GROUP),
                       row_group_size=ROW_GROUP)

    def close(self) -> None:
        """Writes what is left (once what `take` returned is done) and the footer."""
        if self.rows:
            self.writer.write_table(self._taken(self.rows), row_group_size=ROW_GROUP)
        self.writer.close()

    def discard(self) -> None:
        """Let go of a file the run gave up on (removed next; on standard output, a file
        that ends where the run did): its writer is not left to write its footer into a
        closed file later."""
        if self.writer.is_open:
            try:
                self.writer.close()
            except Exception:  # noqa: BLE001  # that file failed too, or is closed: the
                pass  # run's own error is the one to report, and the others still removed

    def _taken(self, rows: int) -> pa.Table:
        """The first `rows` held, let go of."""
        held = pa.Table.from_batches(self.held, SCHEMA)
        self.held, self.rows = held.slice(rows).to_batches(), self.rows - rows
        return held.slice(0, rows)


def _arrays(c: dict[str, Any], views: ZeekViews) -> list[pa.Array]:
    n = len(c["id"])
    zeek = _zeek(views.columns)
    # the moves are endpoint after endpoint: each endpoint's, picked out by numpy (pyarrow's
    # filter of the moves' structs took 0.33 s of the benchmark capture's 2 s under cProfile)
    of_endpoint = np.repeat(np.tile(np.arange(2), n), c["ntr"].reshape(-1))
    moves_ts = _micros(c["moves_ts"])
    later = np.zeros(n, np.int64)  # each row's Zeek views after its first
    later[list(views.later)] = [len(v) for v in views.later.values()]
    ws = pa.nulls(n, _COUNTS) if c["wireshark"] is None else _counts(c["wireshark"], _WS)
    signs = [name for names in c["signs"] for name in names]
    client, server = address_texts(c["ends"])
    out: dict[str, pa.Array] = {
        "client": _arrow(client, pa.string()), "server": _arrow(server, pa.string()),
        "first_ts": _arrow(_micros(c["first_ts"]), _TS),
        "last_ts": _arrow(_micros(c["last_ts"]), _TS),
        "anomalies": _counts(c["anomalies"], c["anomaly_names"]),
        "tunnel": _arrow(c["tunnel_name"], pa.string()) if c["tunnel"].any()
        else pa.nulls(n, pa.string()),
        "wireshark_analysis": ws,
        "diagnosis_signs": pa.ListArray.from_arrays(
            _offsets(np.array([len(names) for names in c["signs"]], np.int64)),
            _arrow(signs, pa.string())),
        "zeek": zeek.take(_arrow(views.first, pa.int64())) if views.later else zeek,
        "zeek_later": pa.ListArray.from_arrays(_offsets(later), zeek.take(_arrow(
            [k for i in sorted(views.later) for k in views.later[i]], pa.int64()))
            if views.later else zeek.slice(0, 0)),
    }
    for e, role in enumerate(ROLES):
        at = np.flatnonzero(of_endpoint == e)
        moves = pa.StructArray.from_arrays(
            [_arrow(moves_ts[at], _TS),
             _names(Coded(c["moves_state_code"][at], _STATES)),
             _arrow(c["moves_timer"][at], pa.bool_()),
             _arrow(c["moves_inferred"][at], pa.bool_())], fields=list(_MOVE))
        out[f"{role}_transitions"] = pa.ListArray.from_arrays(_offsets(c["ntr"][:, e]), moves)
    return [out[f.name] if f.name in out else _names(c[f.name]) if isinstance(c[f.name], Coded)
            else _arrow(c[f.name], f.type) for f in SCHEMA]


#: The numpy type of each fixed-width Arrow type's values (_arrow)
_WIDTHS = {pa.int64(): np.int64, pa.int32(): np.int32, pa.float64(): np.float64,
           _TS: np.int64}


def _arrow(values: Any, kind: pa.DataType, unset: np.ndarray | None = None) -> pa.Array:
    """`values` (numpy's numbers or flags; str and None for a string) as an Arrow array of
    `kind`, null where None or `unset`, made from their buffers: pyarrow's own conversion
    (pa.array) imports pandas, if it is installed, to see whether it was given pandas'
    objects (0.2 s of --parquet's time, and its memory). Texts (one after another from the
    start of their buffer) are strings as they are."""
    if isinstance(values, Texts):
        return _texts(values, unset)
    if kind == pa.string():
        values = list(values)
        missing = np.array([v is None for v in values], bool)
        texts = words(["" if v is None else v for v in values])
        return _texts(texts, missing if unset is None else missing | unset)
    data = _bits(np.asarray(values, bool)) if kind == pa.bool_() \
        else np.ascontiguousarray(values, _WIDTHS[kind])
    return pa.Array.from_buffers(kind, len(values), [_valid(unset), pa.py_buffer(data)])


def _texts(texts: Texts, unset: np.ndarray | None = None) -> pa.Array:
    """Texts that lie one after another from the start of their buffer (texts.gather's,
    words') as strings, the buffer as it is; null where `unset`."""
    offsets = np.append(0, texts.stop).astype(np.int32)
    return pa.Array.from_buffers(pa.string(), len(texts), [
        _valid(unset), pa.py_buffer(offsets), pa.py_buffer(texts.data)])


def _valid(unset: np.ndarray | None) -> pa.Buffer | None:
    """Arrow's validity bitmap: none when nothing is `unset`."""
    return None if unset is None or not unset.any() else pa.py_buffer(_bits(~unset))


def _bits(flags: np.ndarray) -> np.ndarray:
    return np.packbits(flags, bitorder="little")


def _names(column: Coded) -> pa.Array:
    """A Coded column's names (null for None), laid out by compiled code (texts.gather:
    pyarrow's take from a table of the names took a tenth of the Parquet file's making)."""
    if id(column.names) not in _NAME_TEXTS:  # (the names' tables are the modules' own)
        names = column.names.tolist()
        _NAME_TEXTS[id(column.names)] = column.names, words(
            ["" if n is None else n for n in names]), np.array([n is None for n in names])
    _, texts, unset = _NAME_TEXTS[id(column.names)]
    picks = column.codes % len(texts)
    return _texts(gather([(texts, picks)], len(picks)), unset[picks] if unset.any() else None)


#: Each names' table's texts ("" for None) and which are None, by the table's id (the table
#: kept, so that the id is its own)
_NAME_TEXTS: dict[int, tuple[np.ndarray, Texts, np.ndarray]] = {}


def _micros(seconds: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(seconds, np.float64) * 1e6).astype(np.int64)


def _offsets(lengths: np.ndarray) -> pa.Array:
    return _arrow(np.concatenate([[0], np.cumsum(lengths)]), pa.int32())


def _counts(counts: np.ndarray, names: np.ndarray) -> pa.Array:
    """A map of name to count for each row of `counts` (a column per name), counts of 0 left
    out, in the names' order."""
    rows, cols = np.nonzero(counts)
    return pa.MapArray.from_arrays(
        _offsets(np.bincount(rows, minlength=len(counts))),
        _names(Coded(cols, names)),
        _arrow(counts[rows, cols], pa.int64()))


def _zeek(cols: dict[str, Any]) -> pa.StructArray:
    """Zeek views (records.views_columns) as structs."""
    unset = ~cols["timed"]
    arrays = [_arrow(_micros(cols["ts"]), _TS)]
    arrays += [_names(cols[f.name]) if isinstance(cols[f.name], Coded)
               else _arrow(cols[f.name], f.type, unset if f.name in ZEEK_TIMED else None)
               for f in list(_ZEEK)[1:]]
    return pa.StructArray.from_arrays(arrays, fields=list(_ZEEK))

