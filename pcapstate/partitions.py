"""One capture across a Dask cluster: the connection table split by a hash of the 4-tuple.

Each partition (a Dask actor on a worker) reads every file and decodes it whole, and follows
only its share of the connections (track/connections.py `_share`): the other segments only
keep its clock, so that its timers fire when a single run's would. The client steps every
partition through the same batches and merges what they retired into the order a single
run retires in (the record in hand, then the timer's deadline, then the connection's id:
track/connections.py RETIRED); one Summary takes them all, so the result, the records and
the conn.log are a single run's. A partition numbers its own connections; the client
numbers them as a single run does, in the order of the records that opened them, and
counts the live connections (peak_live_connections) from those records and the retired
ones'. The connection limit (--max-connections) holds in each partition, which evicts
among its own connections: once a partition's table fills, the result is not a single
run's (the eviction warning says so).

The workers read the files by the same paths as the client: they share its file system.
Memory: a worker holds its share of the live connections; the client, a step's retired
connections and 8 bytes per connection of the capture (each partition's ids to a single
run's).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from pcapstate import __version__
from pcapstate.read.capture import CaptureError
from pcapstate.settings import Settings

if TYPE_CHECKING:
    from pcapstate.derive.summary import Summary


#: At the end, the live connections retire in steps of this many ids (of all partitions)
FINISH_STEP = 1 << 15


class DaskError(Exception):
    """The Dask cluster cannot run the analysis."""


def version() -> str:
    return __version__


def same_version(client: Any) -> None:
    """DaskError unless every worker runs this pcapstate."""
    versions = set(client.run(version).values())
    if versions != {__version__}:
        raise DaskError(f"the Dask workers run pcapstate {', '.join(sorted(versions))}, "
                        f"this is {__version__}")


class Partition:
    """A Dask actor: one partition of the connection table, stepped by the client a batch
    at a time (`step`). Partition 0 also tells what the reading found (progress, tunnels,
    the result's facts of the reading)."""

    def __init__(self, paths: list[str], names: list[str], settings: Settings, engine: str,
                 part: int, parts: int) -> None:
        from pcapstate.pipeline import Reading
        from pcapstate.track.connections import Tracker

        self.names = dict(zip(paths, names, strict=True))  # as the client's user gave them
        self.part, self.halt, self.error = part, False, None
        try:
            self.reading = Reading(paths, settings, engine)
        except CaptureError as e:
            self.error = self._named(e)
            return
        self.tracker = Tracker(settings, self._retired, share=(part, parts))
        self.retired: list[tuple[Any, ...]] = []
        self.progress: tuple[int, int | None] = (0, None)
        self.batches = self.reading.batches(stop=lambda: self.halt, progress=self._progress)
        self.tunnels = 0  # tunnels told so far

    def _retired(self, rows: np.ndarray, times: np.ndarray,
                 ended: dict[int, list[np.void]]) -> None:
        self.retired.append((rows, times, self.tracker.handed, ended))

    def _progress(self, done: int, total: int | None) -> None:
        self.progress = (done, total)

    def _named(self, e: CaptureError) -> tuple[str, str, int | None]:
        return self.names.get(e.path, e.path), e.message, e.offset

    def step(self, halt: bool) -> dict[str, Any]:
        """Feed the next batch (`halt`: stop reading, as analyze's stop()): what the
        partition retired and opened meanwhile, and whether the reading is over."""
        if self.error is not None:
            return {"error": self.error}
        self.halt = halt
        try:
            batch = next(self.batches, None)
        except CaptureError as e:
            return {"error": self._named(e)}
        if batch is not None:
            self.tracker.feed(batch)
        out = self._handed(read=batch is None)
        if self.part == 0:
            tunnels = self.reading.unwrapper.tunnels
            out |= {"first_ts": None if batch is None else float(batch.ts[0]),
                    "progress": self.progress, "tunnels": tunnels[self.tunnels:]}
            self.tunnels = len(tunnels)
            if batch is None:
                out["facts"] = self._facts()
        return out

    def finish(self, upto: int) -> dict[str, Any]:
        """Once the reading is over: retire the live connections of ids up to `upto`."""
        self.tracker.finish(self.reading.end(), upto)
        return self._handed(read=True) | {"done": self.tracker.live == 0}

    def _handed(self, read: bool) -> dict[str, Any]:
        out = {"retired": self.retired, "opened": self.tracker.opened(), "read": read,
               "evicted": self.tracker.evicted}
        self.retired = []
        return out

    def _facts(self) -> dict[str, Any]:
        """The reading's facts, the files named as the client's user named them."""
        facts = self.reading.facts()
        for i in facts["inputs"]:
            i["path"] = self.names.get(i["path"], i["path"])
        warnings = facts["warnings"]
        for path, name in self.names.items():
            warnings = [w.replace(path, name) for w in warnings]
        facts["warnings"] = warnings
        return facts


class Merge:
    """Puts the partitions' retired connections in a single run's order and numbers them
    as a single run does (see the module's docstring)."""

    def __init__(self, parts: int) -> None:
        self.ids = [np.zeros(0, np.int64) for _ in range(parts)]  # a partition's id - 1 -> id
        self.opened = 0  # connections opened
        self.live = 0
        self.peak = 0

    def step(self, outs: list[dict[str, Any]]) -> tuple[Any, np.ndarray, dict[int, Any]]:
        """The connections the partitions retired in a step (`outs`: their steps' outcomes),
        as a single run's Tracker hands them on: rows, times, Zeek's ended views."""
        from pcapstate import jit
        from pcapstate.track.connections import RETIRED
        from pcapstate.track.slots import SLOT

        at = np.concatenate([o["opened"] for o in outs])
        by_record = np.argsort(at, kind="stable")
        number = np.empty(len(at), np.int64)
        number[by_record] = np.arange(1, len(at) + 1) + self.opened
        k = 0
        for p, o in enumerate(outs):
            self.ids[p] = np.concatenate([self.ids[p], number[k:k + len(o["opened"])]])
            k += len(o["opened"])
        self.opened += len(at)
        parts, times, handed = [np.zeros(0, SLOT)], [np.zeros(0)], [np.zeros(0, RETIRED)]
        ended = {}
        for p, o in enumerate(outs):
            for rows, t, h, views in o["retired"]:
                rows = np.array(rows)  # writable
                for cid, vs in views.items():
                    ended[int(self.ids[p][cid - 1])] = vs
                rows["cid"] = self.ids[p][rows["cid"] - 1]
                parts.append(rows)
                times.append(t)
                handed.append(h)
        rows, when, retired = np.concatenate(parts), np.concatenate(times), \
            np.concatenate(handed)
        tie = np.where(retired["due"] == np.inf, 0, rows["cid"])  # one partition's own order
        order = np.lexsort((tie, retired["due"], retired["at"]))  # (stable) else, ties by id
        # live just after each opening: the retirements at the same record came first
        if len(at):
            live = self.live + np.arange(1, len(at) + 1) \
                - np.searchsorted(np.sort(retired["at"]), at[by_record], side="right")
            self.peak = max(self.peak, int(live.max()))
        self.live += len(at) - len(rows)
        return jit.records(rows[order]), when[order], ended


def on_dask(address: str, parts: int, paths: list[str], settings: Settings, engine: str,
            summary: Summary, tunnels: list[dict[str, Any]],
            progress: Callable[[int, int | None], None] | None,
            stop: Callable[[], bool] | None) -> tuple[dict[str, Any], int, list[int]]:
    """Analyse the capture on the Dask cluster at `address`, its table in `parts`
    partitions (0: one per worker): `summary` takes the retired connections; `tunnels` is
    extended with those met. Returns the reading's facts (pipeline.Reading.facts), the peak
    of live connections and the evictions by tier (summed over the partitions); the facts
    say how many partitions (`parts`: the result does not, it is a single run's)."""
    try:
        from distributed import Client
    except ImportError as e:
        raise DaskError(f"needs dask.distributed ({e.name} is missing): pip install "
                        "'pcapstate[dask]'") from None
    try:
        client = Client(address)
    except (OSError, TimeoutError, ValueError) as e:
        raise DaskError(str(e)) from None
    with client:
        try:
            workers = list(client.nthreads())
            if workers:
                same_version(client)
        except (OSError, TimeoutError) as e:
            raise DaskError(f"{type(e).__name__}: {e}") from None
        if not workers:
            raise DaskError("the cluster has no workers")
        parts = parts or len(workers)
        absolute = [os.path.abspath(p) for p in paths]
        placed = [client.submit(Partition, absolute, paths, settings, engine, p, parts,
                                actor=True, workers=[workers[p % len(workers)]],
                                allow_other_workers=True, pure=False)
                  for p in range(parts)]
        actors: list[Any] = _results(placed)
        merge = Merge(parts)

        def take(outs: list[dict[str, Any]]) -> None:
            rows, times, ended = merge.step(outs)
            if len(rows):
                summary.take(rows, times, ended)

        while True:  # the reading
            halt = stop is not None and stop()
            outs = _results([a.step(halt) for a in actors])
            error = next((o["error"] for o in outs if "error" in o), None)
            if error is not None:
                raise CaptureError(*error)
            first = outs[0]
            tunnels.extend(first["tunnels"])
            if first["first_ts"] is not None:
                summary.timeline.start(first["first_ts"])
            take(outs)
            if progress is not None:
                progress(*first["progress"])
            if first["read"]:
                break
        upto = 0
        while True:  # the end: the live connections retire in the order of their ids,
            upto += FINISH_STEP  # which go up to `upto` in every partition at a time
            outs = _results([
                a.finish(int(np.searchsorted(merge.ids[p], upto, side="right")))
                for p, a in enumerate(actors)])
            take(outs)
            if all(o["done"] for o in outs):
                evicted = [int(n) for n in np.sum([o["evicted"] for o in outs], axis=0)]
                return first["facts"] | {"parts": parts}, merge.peak, evicted


def _results(futures: list[Any]) -> list[Any]:
    """The futures' results; DaskError if the cluster lost a worker (or the way to it)."""
    from concurrent.futures import CancelledError

    from distributed.scheduler import KilledWorker

    try:
        return [f.result() for f in futures]
    except (OSError, TimeoutError, CancelledError, KilledWorker) as e:
        raise DaskError(f"a worker was lost ({type(e).__name__}: {e})") from None
