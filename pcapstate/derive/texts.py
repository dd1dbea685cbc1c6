"""Texts made in bulk: many UTF-8 texts in one buffer (`Texts`), each value's JSON text as
orjson writes it, and lines put together from such columns of texts by compiled code
(`gather`), with no Python object made for each line or for each of its parts.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
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

    def pieces(self) -> list[bytes]:
        raw = self.data.tobytes()
        return [raw[a:b] for a, b in zip(self.start.tolist(), self.stop.tolist(), strict=True)]

    def strings(self) -> list[str]:
        """The texts as str, a list."""
        return [b.decode() for b in self.pieces()]


def words(strings: Sequence[str]) -> Texts:
    """Texts of `strings`, each encoded (a few: a table that parts index)."""
    encoded = [s.encode() for s in strings]
    sizes = np.array([len(b) for b in encoded], np.int64)
    stop = np.cumsum(sizes)
    return Texts(np.frombuffer(b"".join(encoded), np.uint8), stop - sizes, stop)


@lru_cache(maxsize=256)
def _constant(text: str) -> Texts:
    return words([text])


def _split(raw: bytes, n: int) -> Texts | None:
    """The n values' texts of orjson's `raw` text of a list of them, split at its commas;
    None when that does not give n (a value's text holds a comma)."""
    data = np.frombuffer(raw, np.uint8)
    start, stop = _cut(data, n)
    return Texts(data, start, stop) if len(start) else None


@jit.njit(cache=True, nogil=True)
def _cut(data, n):  # type: ignore[no-untyped-def]
    """Where each of the n values of a JSON list's text (`data`) begins and ends, if its
    commas are n - 1; else nothing (two empty arrays)."""
    commas = np.flatnonzero(data == _COMMA)
    if len(commas) != n - 1:
        return commas[:0], commas[:0]
    start, stop = np.empty(n, np.int64), np.empty(n, np.int64)
    start[0], stop[-1] = 1, len(data) - 1
    start[1:], stop[:-1] = commas + 1, commas
    return start, stop


def json_texts(values: np.ndarray | list[Any]) -> Texts:
    """Each value's text as orjson writes it, all in one call and split at the commas
    (orjson writes numpy's int, bool and float64 as their Python values; a number's text
    holds no comma); when some value's text holds a comma, each distinct value alone
    (values hashable)."""
    n = len(values)
    if not n:
        return Texts(np.empty(0, np.uint8), np.empty(0, np.int64), np.empty(0, np.int64))
    if isinstance(values, np.ndarray):
        if values.dtype.kind in "biu" or values.dtype == np.float64:
            split = _split(orjson.dumps(np.ascontiguousarray(values),
                                        option=orjson.OPT_SERIALIZE_NUMPY), n)
            assert split is not None
            return split
        values = values.tolist()
    split = _split(orjson.dumps(values), n)
    if split is not None:
        return split
    distinct = {v: i for i, v in enumerate(dict.fromkeys(values))}
    table = words([orjson.dumps(v).decode() for v in distinct])
    at = np.array([distinct[v] for v in values], np.int64)
    return Texts(table.data, table.start[at], table.stop[at])


def concat(tables: Sequence[Texts]) -> Texts:
    """The texts of `tables`, one table after another."""
    if len(tables) == 1:
        return tables[0]
    sizes = np.array([len(t.data) for t in tables], np.int64)
    shifts = np.repeat(np.cumsum(sizes) - sizes, [len(t) for t in tables])
    return Texts(np.concatenate([t.data for t in tables]),
                 np.concatenate([t.start for t in tables]) + shifts,
                 np.concatenate([t.stop for t in tables]) + shifts)


#: A part of n lines: a text the same on every line (str), a text each (Texts of n), or
#: the text each picks from a table (Texts, and an index into it for each line)
Part = str | Texts | tuple[Texts, np.ndarray]


def gather(parts: Sequence[Part], n: int, bounds: np.ndarray | None = None) -> Texts:
    """n lines, each its parts' texts one after another (each part gives n texts: Part), as
    Texts lying one after another; with `bounds` (int64, units + 1 line numbers from 0 to
    n), each unit of lines bounds[u] to bounds[u + 1] - 1 joined into one text."""
    merged: list[Part] = []
    for p in parts:
        if isinstance(p, str) and merged and isinstance(merged[-1], str):
            merged[-1] += p  # texts the same on every line: one
        elif not (isinstance(p, str) and not p):
            merged.append(p)
    tables: list[Texts] = []
    picks: list[np.ndarray | None] = []
    for p in merged:
        if isinstance(p, str):
            tables.append(_constant(p))
            picks.append(None)
        elif isinstance(p, Texts):
            tables.append(p)
            picks.append(np.arange(n))
        else:
            tables.append(p[0])
            picks.append(p[1])
    every = concat(tables)
    at = np.empty((n, len(merged)), np.int64)
    base = 0
    for j, (t, pick) in enumerate(zip(tables, picks, strict=True)):
        at[:, j] = base if pick is None else base + pick
        base += len(t)
    if bounds is None:
        bounds = np.arange(n + 1, dtype=np.int64)
    data, ends = _gather(every.data, every.start, every.stop, at, bounds)
    return Texts(data, ends[:-1], ends[1:])


#: _gather's indexes: unsigned when compiled, with no check for a negative one (twice the
#: speed); uncompiled, Python's int (numpy's scalars take ten times as long)
_index = int if jit.PLAIN else np.uint64


@jit.njit(cache=True, nogil=True)
def _gather(data, start, stop, at, bounds):  # type: ignore[no-untyped-def]
    """The texts (`data`, `start`, `stop`: Texts) that each row of `at` names, one after
    another, and where each unit of rows (`bounds`) ends, from 0."""
    ends = np.zeros(len(bounds), np.int64)
    parts = at.shape[1]
    for u in range(len(bounds) - 1):
        size = 0
        for r in range(bounds[u], bounds[u + 1]):
            for j in range(parts):
                size += stop[at[r, j]] - start[at[r, j]]
        ends[u + 1] = ends[u] + size
    out = np.empty(ends[-1], np.uint8)
    to = _index(0)
    for r in range(bounds[0], bounds[-1]):
        for j in range(parts):
            i, end = _index(start[at[r, j]]), _index(stop[at[r, j]])
            while i < end:
                out[to] = data[i]
                to += _index(1)
                i += _index(1)
    return out, ends
