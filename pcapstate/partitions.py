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
connections and 8 bytes per connection of the steps that still have a live one (each
partition's ids to a single run's: Numbering).
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


#: At the end, the live connections retire in steps of this many ids (of all partitions),
#: from the first still live
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
        self.failed: str | None = None  # an error that is not the capture's
        try:
            self.reading = Reading(paths, settings, engine)
            self.tracker = Tracker(settings, self._retired, share=(part, parts))
        except CaptureError as e:
            self.error = self._named(e)
            return
        except Exception as e:  # noqa: BLE001 (told to the client, which stops: one line)
            self.failed = _failure(e)
            return
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
        if self.failed is not None:
            return {"failed": self.failed}
        self.halt = halt
        try:
            batch = next(self.batches, None)
            if batch is not None:
                self.tracker.feed(batch)
        except CaptureError as e:
            return {"error": self._named(e)}
        except Exception as e:  # noqa: BLE001
            return {"failed": _failure(e)}
        out = self._handed(read=batch is None)
        # what was read, which every partition must have read alike
        out["batch"] = (0, 0.0, 0.0) if batch is None else \
            (len(batch.ts), float(batch.ts[0]), float(batch.ts[-1]))
        if self.part == 0:
            tunnels = self.reading.unwrapper.tunnels
            out |= {"progress": self.progress, "tunnels": tunnels[self.tunnels:]}
            self.tunnels = len(tunnels)
            if batch is None:
                out["facts"] = self._facts()
        return out

    def finish(self, upto: int) -> dict[str, Any]:
        """Once the reading is over: retire the live connections of ids up to `upto`."""
        try:
            self.tracker.finish(self.reading.end(), upto)
            return self._handed(read=True)
        except Exception as e:  # noqa: BLE001
            return {"failed": _failure(e)}

    def _handed(self, read: bool) -> dict[str, Any]:
        """What it retired and opened since the last step; once the reading is over, the
        id of its first live connection (0: none left)."""
        out = {"retired": self.retired, "opened": self.tracker.opened(), "read": read,
               "evicted": self.tracker.evicted}
        self.retired = []
        if read:
            out["next"] = self.tracker.first_live()
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


class Numbering:
    """One partition's connection ids (1, 2, ... in the order it opened them) to a single
    run's, kept a step's openings at a time; a step's are dropped once all its connections
    have retired (memory: the steps that still have a live connection, not the capture's)."""

    def __init__(self) -> None:
        self.first = np.zeros(16, np.int64)  # each step's first id, the partition's
        self.numbers = np.zeros(16, np.int64)  # ... and its single run's
        self.ids: list[np.ndarray | None] = []  # each step's single run's ids, in order
        self.left: list[int] = []  # each step's connections still live
        self.given = 0  # ids given

    def add(self, numbers: np.ndarray) -> None:
        """The single run's ids of the partition's next connections."""
        if not len(numbers):
            return
        k = len(self.ids)
        if k == len(self.first):
            self.first, self.numbers = (np.concatenate([a, np.zeros(k, np.int64)])
                                        for a in (self.first, self.numbers))
        self.first[k], self.numbers[k] = self.given + 1, numbers[0]
        self.ids.append(numbers)
        self.left.append(len(numbers))
        self.given += len(numbers)

    def of(self, ids: np.ndarray) -> np.ndarray:
        """The single run's ids of these live connections."""
        return self._of(ids, self._steps(ids))

    def retire(self, ids: np.ndarray) -> np.ndarray:
        """The single run's ids of these live connections, which retire."""
        steps = self._steps(ids)
        out = self._of(ids, steps)
        for k, n in zip(*(a.tolist() for a in np.unique(steps, return_counts=True)),
                        strict=True):
            self.left[k] -= n
            if not self.left[k]:
                self.ids[k] = None
        return out

    def _steps(self, ids: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.first[:len(self.ids)], ids, side="right") - 1

    def _of(self, ids: np.ndarray, steps: np.ndarray) -> np.ndarray:
        out = np.empty(len(ids), np.int64)
        for k in np.unique(steps).tolist():
            mine = steps == k
            out[mine] = self.ids[k][ids[mine] - self.first[k]]  # type: ignore[index]
        return out

    def upto(self, number: int) -> int:
        """How many of its ids are at most `number` in a single run's numbering (as far as
        its live connections tell)."""
        k = int(np.searchsorted(self.numbers[:len(self.ids)], number, side="right")) - 1
        if k < 0:
            return 0
        ids = self.ids[k]
        before = int(self.first[k]) - 1
        return before if ids is None else before + int(np.searchsorted(ids, number, "right"))


class Merge:
    """Puts the partitions' retired connections in a single run's order and numbers them
    as a single run does (see the module's docstring)."""

    def __init__(self, parts: int) -> None:
        self.numbering = [Numbering() for _ in range(parts)]
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
        for numbering, o in zip(self.numbering, outs, strict=True):
            numbering.add(number[k:k + len(o["opened"])])
            k += len(o["opened"])
        self.opened += len(at)
        parts, times, handed = [np.zeros(0, SLOT)], [np.zeros(0)], [np.zeros(0, RETIRED)]
        ended: dict[int, Any] = {}
        for numbering, o in zip(self.numbering, outs, strict=True):
            for rows, t, h, views in o["retired"]:
                rows = np.array(rows)  # writable
                ids = rows["cid"].astype(np.int64)
                rows["cid"] = numbering.retire(ids)
                if views:
                    number_of = dict(zip(ids.tolist(), rows["cid"].tolist(), strict=True))
                    ended |= {number_of[cid]: vs for cid, vs in views.items()}
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
            outs = _agreed(_results([a.step(halt) for a in actors]))
            first = outs[0]
            tunnels.extend(first["tunnels"])
            if first["batch"][0]:
                summary.timeline.start(first["batch"][1])
            take(outs)
            if progress is not None:
                progress(*first["progress"])
            if first["read"]:
                break
        while True:  # the end: the live connections retire in the order of their ids, the
            # first FINISH_STEP of them still live in every partition at a time
            left = [int(n.of(np.array([o["next"]]))[0])
                    for n, o in zip(merge.numbering, outs, strict=True) if o["next"]]
            if not left:
                evicted = [int(n) for n in np.sum([o["evicted"] for o in outs], axis=0)]
                return first["facts"] | {"parts": parts}, merge.peak, evicted
            upto = min(left) + FINISH_STEP - 1
            outs = _agreed(_results([a.finish(n.upto(upto))
                                     for n, a in zip(merge.numbering, actors, strict=True)]))
            take(outs)


def _agreed(outs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The partitions' outcomes of a step, once checked: an error (the capture's: as a
    single run tells it), a failure, or partitions that read different records (a file
    that changed while they read it) stop the analysis."""
    for p, o in enumerate(outs):
        if "error" in o:
            raise CaptureError(*o["error"])
        if "failed" in o:
            raise DaskError(f"partition {p} failed: {o['failed']}")
    if len({o["batch"] for o in outs if "batch" in o}) > 1:
        raise DaskError("the partitions read different records (was a file still being "
                        "written?): " + "; ".join(
                            f"partition {p}: {n:,} records, {first:.6f} to {last:.6f}"
                            for p, (n, first, last) in enumerate(o["batch"] for o in outs)))
    return outs


def _failure(e: Exception) -> str:
    """An exception raised on a worker, in one line."""
    return f"{type(e).__name__}: {e}".splitlines()[0]


def _results(futures: list[Any]) -> list[Any]:
    """The futures' results; DaskError if the cluster lost a worker (or the way to it)."""
    from concurrent.futures import CancelledError

    from distributed.scheduler import KilledWorker

    try:
        return [f.result() for f in futures]
    except (OSError, TimeoutError, CancelledError, KilledWorker) as e:
        raise DaskError(f"a worker was lost ({type(e).__name__}: {e})") from None
