"""Texts made in bulk: many UTF-8 texts in one buffer (`Texts`), each value's JSON text as
orjson writes it, and lines put together from such columns of texts by compiled code
(`gather`), with no Python object made for each line or for each of its parts.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from pcapstate import jit

_COMMA = ord(",")


@dataclass(frozen=True, slots=True)
class Texts:
    """Texts in one buffer: text k is `data[start[k]:stop[k]]`, UTF-8."""

    data: np.ndarray  # uint8
    start: np.ndarray  # int64
    stop: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.start)

    def __getitem__(self, at: np.ndarray) -> "Texts":
        """The texts at indexes `at`, in that order (in the same buffer)."""
        return Texts(self.data, self.start[at], self.stop[at])

    def pieces(self) -> list[bytes]:
        raw = self.data.tobytes()
        return [raw[a:b] for a, b in zip(self.start.tolist(), self.stop.tolist(), strict=True)]

    def strings(self) -> list[str]:
        """The texts as str, a list (ASCII, a byte a character: cut from one str)."""
        raw = self.data.tobytes()
        bounds = zip(self.start.tolist(), self.stop.tolist(), strict=True)
        if not raw.isascii():
            return [raw[a:b].decode() for a, b in bounds]
        text = raw.decode()
        return [text[a:b] for a, b in bounds]


def words(strings: Sequence[str]) -> Texts:
    """Texts of `strings`, each encoded, one after another."""
    joined = "".join(strings)
    if joined.isascii():  # a byte a character: each text as long as its string
        data = joined.encode()
        sizes = np.fromiter(map(len, strings), np.int64, len(strings))
    else:
        encoded = [s.encode() for s in strings]
        data, sizes = b"".join(encoded), np.array([len(b) for b in encoded], np.int64)
    stop = np.cumsum(sizes)
    return Texts(np.frombuffer(data, np.uint8), stop - sizes, stop)


def json_columns(columns: Sequence[np.ndarray | list[Any]]) -> list[Texts]:
    """Each column's values' texts as orjson writes them (json_texts), all from one orjson
    call: Texts that share one buffer. A value may be anything orjson writes; numpy's int,
    bool and float64 it writes as their Python values."""
    values = [c if not isinstance(c, np.ndarray) else np.ascontiguousarray(c)
              if c.dtype.kind in "biu" or c.dtype == np.float64 else c.tolist()
              for c in columns]
    data = np.frombuffer(orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY), np.uint8)
    counts = np.array([len(c) for c in columns], np.int64)
    start, stop = _cut(data, counts)
    bounds = np.zeros(len(columns) + 1, np.int64)
    np.cumsum(counts, out=bounds[1:])
    return [Texts(data, start[a:b], stop[a:b])
            for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)]


def json_texts(values: np.ndarray | list[Any]) -> Texts:
    """Each value's text as orjson writes it (json_columns)."""
    return json_columns([values])[0]


_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_OPEN, _CLOSE = (ord("["), ord("{")), (ord("]"), ord("}"))


@jit.njit(cache=True, nogil=True)
def _cut(data, counts):  # type: ignore[no-untyped-def]
    """Where each value of the columns in `data` begins and ends, column after column: `data`
    is a JSON list of lists (orjson's compact text), `counts` how many values each holds."""
    start, stop = np.empty(counts.sum(), np.int64), np.empty(counts.sum(), np.int64)
    depth, k, quoted, escaped, opened = 0, 0, False, False, 0
    for i in range(len(data)):
        c = data[i]
        if quoted:
            if escaped:
                escaped = False
            elif c == _BACKSLASH:
                escaped = True
            elif c == _QUOTE:
                quoted = False
        elif c == _QUOTE:
            quoted = True
        elif c == _OPEN[0] or c == _OPEN[1]:
            depth += 1
            if depth == 2:  # a column's list
                opened = i
                if k < len(start):  # (not after the last value: an empty list)
                    start[k] = i + 1
        elif c == _CLOSE[0] or c == _CLOSE[1]:
            if depth == 2 and i > opened + 1:  # not an empty list
                if k < len(stop):
                    stop[k] = i
                k += 1
            depth -= 1
        elif c == _COMMA and depth == 2:
            if k < len(stop):
                stop[k] = i
            k += 1
            if k < len(start):
                start[k] = i + 1
    assert k == len(start)  # (the checks above: numba's indexing has none)
    return start, stop


def in_stead(texts: Texts, where: np.ndarray, other: Texts) -> "Part":
    """`texts` as a part of len(texts) lines (gather), with `other`'s one text in their
    stead where `where` is true (an unset value's). `other` lies in texts' own buffer
    (json_columns' of one call) or in one of its own, then added to a copy."""
    n = len(texts)
    if other.data is texts.data:
        data, start, stop = texts.data, other.start[0], other.stop[0]
    else:
        data = np.concatenate([texts.data, other.data[other.start[0]:other.stop[0]]])
        start, stop = len(texts.data), len(data)
    table = Texts(data, np.append(texts.start, start), np.append(texts.stop, stop))
    return table, np.where(where, n, np.arange(n))


#: A part of n lines: a text the same on every line (str), a text each (Texts of n), or
#: the text each picks from a table (Texts, and an index into it for each line)
Part = str | Texts | tuple[Texts, np.ndarray]


def gather(parts: Sequence[Part], n: int, bounds: np.ndarray | None = None) -> Texts:
    """n lines, each its parts' texts one after another (each part gives n texts: Part), as
    Texts lying one after another; with `bounds` (int64, units + 1 line numbers from 0 to
    n), each unit of lines bounds[u] to bounds[u + 1] - 1 joined into one text."""
    if bounds is None:
        bounds = np.arange(n + 1, dtype=np.int64)
    if not n:
        ends = np.zeros(len(bounds), np.int64)
        return Texts(np.empty(0, np.uint8), ends[:-1], ends[1:])
    merged: list[Part] = []
    for p in parts:
        if isinstance(p, str) and merged and isinstance(merged[-1], str):
            merged[-1] += p  # texts the same on every line: one
        elif not (isinstance(p, str) and not p):
            merged.append(p)
    # Each table (a part's Texts) and each buffer is laid end to end once (by id); a part's
    # row of `plan` says where its table and buffer begin and how a line picks its text:
    # the k-th constant, the line's own, or by the part's indexes (laid end to end too).
    # Compiled code does the rest: a numpy call or two per part here took most of the time
    constants = words([p for p in merged if isinstance(p, str)])
    tables: dict[int, int] = {}  # each table's place among the texts (by id)
    buffers: dict[int, int] = {}  # each buffer's place in the data
    starts, stops, datas, picks = [], [], [], []
    plan = np.empty((len(merged), 4), np.int64)  # a part's table, buffer, pick, table's size
    texts = bytes_ = picked = k = 0
    for j, p in enumerate(merged):
        table, pick = (constants, None) if isinstance(p, str) else \
            (p, None) if isinstance(p, Texts) else p
        if id(table) not in tables:
            tables[id(table)] = texts
            starts.append(table.start)
            stops.append(table.stop)
            texts += len(table.start)
        if id(table.data) not in buffers:
            buffers[id(table.data)] = bytes_
            datas.append(table.data)
            bytes_ += len(table.data)
        if isinstance(p, str):
            how, k = -2 - k, k + 1  # the constant k
        elif pick is None:
            how = -1  # the line's own
        else:
            how, picked = picked, picked + n  # from the indexes at picked
            picks.append(pick)
        plan[j] = tables[id(table)], buffers[id(table.data)], how, len(table.start)
    data, ends = _gather(_joined(datas, np.uint8), _joined(starts, np.int64),
                         _joined(stops, np.int64), _joined(picks, np.int64), plan, bounds)
    return Texts(data, ends[:-1], ends[1:])


def _joined(arrays: list[np.ndarray], dtype: type) -> np.ndarray:
    """The arrays end to end (the one as it is, if contiguous: _gather is compiled for
    contiguous arrays only, not again for another layout)."""
    return np.ascontiguousarray(arrays[0], dtype) if len(arrays) == 1 else \
        np.concatenate(arrays, dtype=dtype) if arrays else np.zeros(0, dtype)


#: _gather's indexes: unsigned when compiled, with no check for a negative one (twice the
#: speed); uncompiled, Python's int (numpy's scalars take ten times as long)
_index = int if jit.PLAIN else np.uint64


@jit.njit(cache=True, nogil=True)
def _gather(data, start, stop, picks, plan, bounds):  # type: ignore[no-untyped-def]
    """The lines' texts one after another, each of its parts' (gather's `plan`), and where
    each unit of lines (`bounds`) ends, from 0."""
    first, last = _places(start, stop, picks, plan, bounds[-1])
    ends = np.zeros(len(bounds), np.int64)
    parts = plan.shape[0]
    for u in range(len(bounds) - 1):
        size = 0
        for r in range(bounds[u], bounds[u + 1]):
            for j in range(parts):
                size += last[r, j] - first[r, j]
        ends[u + 1] = ends[u] + size
    out = np.empty(ends[-1], np.uint8)
    to = _index(0)
    for r in range(bounds[0], bounds[-1]):
        for j in range(parts):
            i, end = _index(first[r, j]), _index(last[r, j])
            while i < end:
                out[to] = data[i]
                to += _index(1)
                i += _index(1)
    return out, ends


@jit.njit(cache=True, nogil=True)
def _places(start, stop, picks, plan, n):  # type: ignore[no-untyped-def]
    """Where each of n lines' texts lies in the data, by part (gather's plan; an index
    below 0 counts from its table's end, as numpy's do)."""
    first, last = np.empty((n, len(plan)), np.int64), np.empty((n, len(plan)), np.int64)
    for j in range(len(plan)):
        table, offset, how, size = plan[j, 0], plan[j, 1], plan[j, 2], plan[j, 3]
        for r in range(n):
            at = r if how == -1 else -2 - how if how < 0 else picks[how + r]
            at += table + (size if at < 0 else 0)
            first[r, j], last[r, j] = start[at] + offset, stop[at] + offset
    return first, last
