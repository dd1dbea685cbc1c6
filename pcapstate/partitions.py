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
Memory: a worker holds its share of the live connections, and what it retired in a step
until the client takes it (PIECE at a time); the client, PIECE retired connections of each
partition at most (Merge), and 8 bytes per connection of the steps that still have a live
one (each partition's ids to a single run's: Numbering).
"""

from __future__ import annotations

import os
from collections import deque
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
#: A partition hands on what it retired in a step this many connections at a time (the
#: client holds at most this many of each partition's: track/connections.py HAND_ON)
PIECE = 1 << 12


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
        self.retired: deque[tuple[Any, ...]] = deque()
        self.progress: tuple[int, int | None] = (0, None)
        self.batches = self.reading.batches(stop=lambda: self.halt, progress=self._progress)
        self.tunnels = 0  # tunnels told so far

    def _retired(self, rows: np.ndarray, views: np.ndarray, times: np.ndarray,
                 ended: dict[int, list[np.void]]) -> None:
        self.retired.append((rows, views, times, self.tracker.handed, ended))

    def _progress(self, done: int, total: int | None) -> None:
        self.progress = (done, total)

    def _named(self, e: CaptureError) -> tuple[str, str, int | None]:
        return self.names.get(e.path, e.path), e.message, e.offset

    def step(self, halt: bool, piece: int = PIECE) -> dict[str, Any]:
        """Feed the next batch (`halt`: stop reading, as analyze's stop()): what the
        partition opened meanwhile, the first `piece` connections it retired (`more`: more
        are left, for `more`), and whether the reading is over."""
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
        out = self._handed(batch is None, piece)
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

    def finish(self, upto: int, piece: int = PIECE) -> dict[str, Any]:
        """Once the reading is over: retire the live connections of ids up to `upto`, and
        hand on the first `piece` of them, as `step`."""
        try:
            self.tracker.finish(self.reading.end(), upto)
            return self._handed(True, piece)
        except Exception as e:  # noqa: BLE001
            return {"failed": _failure(e)}

    def more(self, piece: int = PIECE) -> dict[str, Any]:
        """The next `piece` connections it retired in the step, and whether more are
        left."""
        try:
            return {"retired": self._piece(piece), "more": bool(self.retired)}
        except Exception as e:  # noqa: BLE001
            return {"failed": _failure(e)}

    def _handed(self, read: bool, piece: int) -> dict[str, Any]:
        """What it opened since the last step and the first of what it retired (`more`);
        once the reading is over, the id of its first live connection (0: none left)."""
        out = self.more(piece) | {"opened": self.tracker.opened(), "read": read,
                                  "evicted": self.tracker.evicted}
        if read:
            out["next"] = self.tracker.first_live()
        return out

    def _piece(self, piece: int) -> list[tuple[Any, ...]]:
        """The next `piece` retired connections, in the order they retired: (rows, their
        Zeek views, times, what the tracker handed on, Zeek's ended views by id) as its
        Tracker handed them on, the last cut at `piece`."""
        out = []
        while self.retired and piece > 0:
            rows, views, times, handed, ended = self.retired.popleft()
            if len(rows) > piece:
                rest = set(rows["cid"][piece:].tolist())
                self.retired.appendleft((rows[piece:], views[piece:], times[piece:],
                                         handed[piece:],
                                         {c: v for c, v in ended.items() if c in rest}))
                ended = {c: v for c, v in ended.items() if c not in rest}
                rows, views, times, handed = rows[:piece], views[:piece], times[:piece], \
                    handed[:piece]
            out.append((rows, views, times, handed, ended))
            piece -= len(rows)
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
    as a single run does (see the module's docstring), a piece at a time: each partition
    hands on what it retired in its own order, and what is at or before every partition's
    last piece (its frontier) can go (a k-way merge). The order: the record in hand, the
    timer's deadline, the single run's id (not for retirements with no deadline: a
    partition's own order), then the partition and its order."""

    def __init__(self, parts: int) -> None:
        self.numbering = [Numbering() for _ in range(parts)]
        self.opened = 0  # connections opened
        self.live = 0
        self.peak = 0
        # the rows received and not yet gone, a column each: rows, times, the order's keys
        self.held: dict[str, np.ndarray] = {}
        self.ended: dict[int, Any] = {}  # their Zeek views ended early, by single run's id
        self.frontier: list[tuple[Any, ...]] = [()] * parts  # each partition's last key
        self.received = [0] * parts  # rows received in the step, each partition's
        self.at = np.zeros(0, np.int64)  # the step's openings' records, in order
        self.gone = np.zeros(1, np.int64)  # retirements by the first opening not before

    def open(self, outs: list[dict[str, Any]]) -> None:
        """A step begins: number the connections the partitions opened (`outs`: their
        steps' outcomes)."""
        at = np.concatenate([o["opened"] for o in outs])
        by_record = np.argsort(at, kind="stable")
        number = np.empty(len(at), np.int64)
        number[by_record] = np.arange(1, len(at) + 1) + self.opened
        k = 0
        for numbering, o in zip(self.numbering, outs, strict=True):
            numbering.add(number[k:k + len(o["opened"])])
            k += len(o["opened"])
        self.opened += len(at)
        self.at = at[by_record]
        self.gone = np.zeros(len(at) + 1, np.int64)
        self.received = [0] * len(self.numbering)

    def add(self, part: int, pieces: list[tuple[Any, ...]]) -> None:
        """What partition `part` handed on next, numbered as a single run numbers it."""
        numbering, new = self.numbering[part], []
        for rows, views, times, handed, ended in pieces:
            if not len(rows):
                continue
            rows = np.array(rows)  # writable
            ids = rows["cid"].astype(np.int64)
            rows["cid"] = numbering.retire(ids)
            if ended:
                number_of = dict(zip(ids.tolist(), rows["cid"].tolist(), strict=True))
                self.ended |= {number_of[cid]: vs for cid, vs in ended.items()}
            n = len(rows)
            new.append({"rows": rows, **({"views": views} if len(views) else {}),
                        "times": times, "at": handed["at"],
                        "due": handed["due"],
                        "tie": np.where(handed["due"] == np.inf, 0, rows["cid"]),
                        "part": np.full(n, part), "order": self.received[part] + np.arange(n)})
            self.received[part] += n
        if new:
            self.frontier[part] = tuple(new[-1][k][-1] for k in _ORDER)
            columns = [self.held, *new] if self.held else new
            self.held = {k: np.concatenate([c[k] for c in columns]) for k in columns[0]}

    def ready(self, more: list[bool]) -> tuple[Any, Any, np.ndarray, dict[int, Any]] | None:
        """The rows held that no partition can put anything before (`more`: which have
        more to hand on), in order, as a single run's Tracker hands them on: rows, their
        Zeek views (none when not followed), times, Zeek's ended views. None if none."""
        from pcapstate import jit
        from pcapstate.track.zeek_view import VIEW

        if not self.held:
            return None
        cols = self.held
        going = np.ones(len(cols["rows"]), bool)
        waiting = [self.frontier[p] for p, m in enumerate(more) if m]
        if waiting:
            going = _not_after(cols, min(waiting))
        order = np.flatnonzero(going)[np.lexsort([cols[k][going] for k in _ORDER[::-1]])]
        if not len(order):
            return None
        self.gone += np.bincount(np.searchsorted(self.at, cols["at"][order], side="left"),
                                 minlength=len(self.gone))
        rows, when = cols["rows"][order], cols["times"][order]
        views = cols["views"][order] if "views" in cols else np.zeros(0, VIEW)
        ended = {}
        if self.ended:
            ended = {cid: self.ended.pop(cid) for cid in rows["cid"].tolist()
                     if cid in self.ended}
        self.held = {k: v[~going] for k, v in cols.items()} if not going.all() else {}
        return jit.records(rows), jit.records(views), when, ended

    def waits_on(self, more: list[bool]) -> list[int]:
        """The partitions to ask for more: those with more to hand on and none held."""
        held = set() if not self.held else set(np.unique(self.held["part"]).tolist())
        return [p for p, m in enumerate(more) if m and p not in held]

    def close(self) -> None:
        """The step is over: the peak of live connections just after each opening (the
        retirements at the same record came first). DaskError if rows are left, which
        only a partition that retired out of a single run's order leaves."""
        if self.held:
            raise DaskError("the partitions' retired connections could not be merged "
                            "(a bug: please report it)")
        n = len(self.at)
        if n:
            live = self.live + np.arange(1, n + 1) - np.cumsum(self.gone)[:n]
            self.peak = max(self.peak, int(live.max()))
        self.live += n - int(self.gone.sum())


#: The merge's order (Merge), its first key first
_ORDER = ("at", "due", "tie", "part", "order")


def _not_after(cols: dict[str, np.ndarray], key: tuple[Any, ...]) -> np.ndarray:
    """Which rows of `cols` come at or before `key` in the merge's order (_ORDER)."""
    out = np.ones(len(cols["at"]), bool)  # equal on every key: at it
    for name, value in zip(_ORDER[::-1], key[::-1], strict=True):
        column = cols[name]
        out = (column < value) | ((column == value) & out)
    return out


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
            """A step's outcomes: what the partitions retired goes to `summary`, a piece
            at a time, merged."""
            merge.open(outs)
            more = [o["more"] for o in outs]
            for p, o in enumerate(outs):
                merge.add(p, o["retired"])
            while True:
                merged = merge.ready(more)
                if merged is not None:
                    summary.take(*merged)
                asked = merge.waits_on(more)
                if not asked:
                    break
                got = _agreed(_results([actors[p].more(PIECE) for p in asked]))
                for p, o in zip(asked, got, strict=True):
                    merge.add(p, o["retired"])
                    more[p] = o["more"]
            merge.close()

        while True:  # the reading
            halt = stop is not None and stop()
            outs = _agreed(_results([a.step(halt, PIECE) for a in actors]))
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
            outs = _agreed(_results([a.finish(n.upto(upto), PIECE)
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
