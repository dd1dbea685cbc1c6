"""The pipeline: capture files -> decoded segments -> connection table -> summary -> result.

This is the only module that ties reading to analysis; the state machine and the summary
know nothing of files.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import numpy as np

from pcapstate import __version__, collector
from pcapstate.read.capture import Capture, open_captures
from pcapstate.schema import SCHEMA
from pcapstate.settings import Settings

if TYPE_CHECKING:  # the compiled engine is imported once the inputs are known to be good
    from pcapstate.decode.frames import Batch
    from pcapstate.derive.host import HostView
    from pcapstate.derive.summary import HandOn
    from pcapstate.derive.timeline import Timeline

Progress = Callable[[int, int | None], None]
P = ParamSpec("P")
R = TypeVar("R")


def _heap_given_back(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn`, after which what it froze out of the garbage collector's passes (gc.freeze)
    is collected again as usual: a long-running process calls it again and again."""
    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        finally:
            gc.unfreeze()
    return run


@_heap_given_back
def analyze(paths: list[str], settings: Settings | None = None, *,
            on_record: Callable[[dict[str, Any]], None] | None = None,
            on_lines: Callable[[memoryview], object] | None = None,
            line_end: str = "\n",
            on_brief: Callable[[list[list[Any]]], None] | None = None,
            on_zeek: Callable[[dict[str, Any]], None] | None = None,
            on_columns: Callable[[dict[str, Any], Any], Callable[[], object] | None]
            | None = None,
            progress: Progress | None = None, engine: str = "fast",
            stop: Callable[[], bool] | None = None,
            note: Callable[[str], object] | None = None,
            hosts: list[HostView] | None = None,
            dask: str | None = None, partitions: int = 0,
            behind: Callable[[HandOn], None] | None = None) -> dict[str, Any]:
    """Analyse one capture, given as one file or a time-ordered set of files.

    `on_record` receives each connection's record as the connection is retired (in
    retirement order); `on_lines` the same records as JSON Lines' text (UTF-8, a line each, as
    `--jsonl` writes them), many lines at a time, for less than the dicts (each line ends
    with `line_end`: render/output.py SEPARATOR for write_json's array); `on_brief` the
    same connections in brief (derive/records.py BRIEF_FIELDS), a list at a time, at a
    fraction of the cost; `on_zeek` the same connections as Zeek sees them
    (derive/records.py conn_entries: what a conn.log needs, a column each), a batch at a
    time, also for less; `on_columns` the same records' fields, a column each, and their
    Zeek views, a batch at a time (derive/records.py columns and zeek_views: what
    render/parquet.py writes; it may return what is left to do after: a function).
    `behind`, if given, runs the work of handing each batch on to those four later, in
    order (in other threads: render/output.py Behind.later, which the caller waits for
    before it uses what they made), except with `hosts`.
    `progress(bytes_done, bytes_total)` is
    called now and then. `stop()`, asked between batches, ends the reading early: the
    result then covers what was read (`interrupted` is true, a warning says so); connections
    still open then are reported as open. `note(text)` hears what a person waiting
    should know (the engine is compiling, on a first run). `hosts`: socket lists taken on
    hosts during the incident (derive/host.py read_ss), joined to the connections: the
    result's `host_evidence`.
    `engine`: "fast", the compiled decoder (decode/frames.py); "tshark", Wireshark's
    dissectors (decode/tshark.py); "auto", fast unless a link type needs tshark. Either
    feeds the one tracker (track/).
    `dask`: the address of a Dask cluster whose workers share the connection table, in
    `partitions` parts (pcapstate/partitions.py): the same result, each worker holding a
    share of the live connections.
    Zeek's view (Settings.zeek) is followed when asked, when a setting of it is given
    (zeek_bare, zeek_checksums), or when an output needs it: the records hold it, and so
    does a conn.log.
    Raises CaptureError when an input cannot be read at all.
    """
    settings = settings or Settings()
    if not settings.zeek and (settings.zeek_bare or settings.zeek_checksums or hosts or any(
            f is not None for f in (on_record, on_lines, on_zeek, on_columns))):
        settings = dataclasses.replace(settings, zeek=True)
    # What is loaded now (numba, numpy, the compiled engine: over 100,000 objects) lives to
    # the end: no collector passes while it is built (they took 40-60 ms of the 0.3 s it
    # takes on the benchmark capture), then out of the collector's way until the end
    # (_heap_given_back), whose full passes went through it all again and again while
    # records were built (measured: half of the time of --jsonl)
    with collector.paused():
        reading = Reading(paths, settings, engine)
        from pcapstate import jit
        from pcapstate.derive.host import HostJoin
        from pcapstate.derive.summary import Summary
        from pcapstate.track.connections import Tracker
    gc.freeze()
    join = HostJoin(hosts) if hosts else None
    if join is not None and on_record is not None:
        to_join, to_caller = join.take, on_record

        def on_record(rec: dict[str, Any]) -> None:
            to_join(rec)
            to_caller(rec)
    elif join is not None:
        on_record = join.take
    tunnels: list[dict[str, Any]] = [] if dask else reading.unwrapper.tunnels
    summary = Summary(settings, on_record, on_brief, on_zeek, on_columns,
                      wireshark=reading.engine == "tshark", tunnels=tunnels, on_lines=on_lines,
                      line_end=line_end,
                      behind=behind if join is None else None)  # the join is read at the end
    started = time.perf_counter()
    with ExitStack() as watching:  # the first run's compile, told through `note`
        if note is not None:
            watching.enter_context(jit.watch(note))
        if dask:
            from pcapstate.partitions import on_dask

            reading.close()
            facts, peak, evicted = on_dask(dask, partitions, paths, settings, engine,
                                           summary, tunnels, progress, stop)
        else:
            tracker = Tracker(settings, summary.take)
            for batch in reading.batches(summary.timeline, stop, progress):
                tracker.feed(batch)
            tracker.finish(reading.end())
            facts, peak, evicted = reading.facts(), tracker.peak_live, tracker.evicted
    warnings, stopped = facts.pop("warnings"), facts.pop("interrupted")
    parts = facts.pop("parts", 1)
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "pcapstate_version": __version__,
        **facts,
        "peak_live_connections": peak,
        **summary.to_json(evicted=evicted),
        "timeline": summary.timeline.to_json(facts["capture"]["end_ts"]),
        "warnings": warnings + _eviction_warning(evicted, settings.max_connections, parts)
        + ([f"interrupted: only the first {facts['accounting']['records']:,} records were "
            "analysed; connections still open then are reported as open"] if stopped else []),
        "interrupted": stopped,
        "elapsed_seconds": time.perf_counter() - started,
    }
    if join is not None:
        result["host_evidence"] = join.to_json(result)
        result["warnings"] += join.warnings(result["capture"])
    return result


class Reading:
    """Reads one capture's files, decodes them and counts what they hold: what a run in
    one process and each partition of a run on Dask (pcapstate/partitions.py) do alike.
    `batches` decodes them (a tracker takes them), then `facts` says what the result
    says of the reading. Raises CaptureError when an input cannot be read at all."""

    def __init__(self, paths: list[str], settings: Settings, engine: str = "fast") -> None:
        # an empty file among others (a rotated set's last, cut off by a full disk) is left
        # out, with a warning; alone, or all of them, it is an error (nothing to read)
        empty = [p for p in paths if len(paths) > 1 and p != "-" and os.path.isfile(p)
                 and os.path.getsize(p) == 0]
        self.left_out = empty if len(empty) < len(paths) else []
        self.captures = open_captures([p for p in paths if p not in self.left_out])
        from pcapstate.decode import frames, tshark, unwrap

        self.settings = settings
        self.decoder = {"engine": engine, "reason": None}
        fallback = None
        if engine == "auto":
            kinds = {lt for c in self.captures for lt in c.linktypes}
            odd = sorted(kinds - frames.LINKTYPES - set(unwrap.LINKTYPES))
            engine = "tshark" if odd and len(odd) == len(kinds) else "fast"
            self.decoder = {"engine": engine, "reason": (
                f"link type {', '.join(map(str, odd))}: not decoded by the fast engine"
                if engine == "tshark" else "every link type decoded by the fast engine"
                if not odd else f"link type {', '.join(map(str, odd))}: its frames decoded "
                "by tshark" if tshark.available() else
                f"link type {', '.join(map(str, odd))}: not decoded (tshark not found)")}
            if engine == "fast" and tshark.available():  # frames neither path reads, to tshark
                fallback = tshark.read_frames
        self.engine = engine
        self.unwrapper = unwrap.Unwrapper(settings.zeek_checksums, fallback)
        self.accounting: Counter[str] = Counter()
        self.first, self.last = float("inf"), float("-inf")
        sizes = [c.size for c in self.captures if c.size is not None and not c.compressed]
        self.total = sum(sizes) if len(sizes) == len(self.captures) else None
        self.done = 0  # bytes of the files read whole
        self.stopped = False

    def batches(self, timeline: Timeline | None = None, stop: Callable[[], bool] | None = None,
                progress: Progress | None = None) -> Iterator[Batch]:
        """The capture's decoded batches, in order; `timeline`, if given, is started at the
        first. `stop()`, asked between batches, ends them early."""
        from pcapstate.decode import frames, tshark

        verify = self.settings.zeek_checksums
        try:
            for cap in self.captures:
                source = cap.batches(verify=verify, unwrapper=self.unwrapper) \
                    if self.engine == "fast" else \
                    tshark.batches(cap, verify=verify, tunnels=self.unwrapper)
                fed = 0  # records of this file that went through the table
                cut = [False]  # stop() ended the reading
                for batch in read_ahead(source, stop, cut, live=cap.size is None):
                    fed += len(batch.ts)
                    if timeline is not None:
                        timeline.start(float(batch.ts[0]))
                    self.first = min(self.first, float(batch.ts.min()))
                    self.last = max(self.last, float(batch.ts.max()))
                    other = batch.kind[batch.kind != frames.TCP]
                    if len(other):
                        for code, n in zip(*np.unique(other, return_counts=True), strict=True):
                            self.accounting[frames.kind_name(int(code))] += int(n)
                    yield batch
                    if progress is not None:
                        progress(self.done + cap.bytes_read, self.total)
                if cut[0]:
                    self.stopped = True
                    cap.records = fed  # not those the reader had decoded ahead
                self.done += cap.bytes_read
                if self.stopped:
                    break
        finally:
            self.close()
        if progress is not None:
            progress(self.done, self.total)

    def close(self) -> None:
        for cap in self.captures:
            if not (self.stopped and cap.size is None):  # a stream stopped while its reader
                cap.close()  # waits on it: closing would wait too, for the writer to end

    def end(self) -> float:
        """When the capture ended: its last record, or a later end a file's header gives."""
        stops = [c.end_ts for c in self.captures if c.end_ts is not None and not self.stopped]
        return max([self.last, *stops]) if records_read(self.captures) else 0.0

    def facts(self) -> dict[str, Any]:
        """What the result says of the reading (in the result's order; `warnings` and
        `interrupted` go at its end)."""
        from pcapstate.derive.fold import BINS_PER_DECADE

        captures, settings, accounting = self.captures, self.settings, self.accounting
        records = records_read(captures)
        first, last, end = self.first, self.last, self.end()
        coverage = _coverage(records, accounting, self.unwrapper.unwrapped,
                             self.unwrapper.fragments.used)
        return {
            "decoder": self.decoder,
            "inputs": [_input_json(c) for c in captures],
            "capture": {
                "first_ts": first if records else None,
                "last_ts": last if records else None,
                "end_ts": end if records else None,
                "duration": max(end - first, 0.0) if records else 0.0,
            },
            "settings": {
                "time_wait": settings.time_wait,
                "fin_timeout": settings.fin_timeout,
                "linger": settings.linger,
                "max_connections": settings.max_connections,
                "zeek": settings.zeek,
                "zeek_checksums": settings.zeek_checksums,
                "zeek_bare": settings.zeek_bare,
                "stuck_after": {st.value: v for st, v in settings.stuck_after.items()},
                "histogram_bins_per_decade": BINS_PER_DECADE,
            },
            "accounting": {
                "records": records,
                "tcp_segments": records - accounting.total(),
                "other": _group(accounting, "other:"),
                "undecodable": _group(accounting, "bad:"),
            },
            "coverage": coverage,
            "warnings": [f"{p}: empty file (0 bytes): left out" for p in self.left_out]
            + [w for c in captures for w in c.warnings] + Capture.overlaps(captures)
            + _coverage_warning(coverage, accounting, self.engine) + [
                f"{c.path}: the capturing interface dropped {c.dropped:,} packets: states may "
                "be wrong where a SYN, FIN or RST was lost" for c in captures if c.dropped],
            "interrupted": self.stopped,
        }


def read_ahead(batches: Iterator[Batch], stop: Callable[[], bool] | None = None,
               cut: list[bool] | None = None, live: bool = False) -> Iterator[Batch]:
    """The batches, decoded in a thread one batch ahead of the caller: decoding and the
    connection table run on two cores (both compiled without the GIL). One batch waits in
    the queue while the caller works on another, within scan.BATCH_BUFFERS. `stop()` is
    asked after each batch, and, from a `live` source (a stream, whose next records may
    never come), every 0.2 s while the reader waits: if it says so, the batches end there
    and `cut[0]` is set. A file's reader is only decoding: how many batches are read
    before a stop does not hang on how long that takes (a partition of a Dask run, still
    loading its compiled decoder, stops after the same batch as a single run)."""
    ahead: queue.Queue[tuple[Batch | None, BaseException | None]] = queue.Queue(maxsize=1)
    gone = threading.Event()  # the caller has stopped taking batches

    def offer(item: tuple[Batch | None, BaseException | None]) -> bool:
        while not gone.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False  # the caller has gone

    def produce() -> None:
        try:
            for batch in batches:
                if not offer((batch, None)):
                    return
            offer((None, None))
        except BaseException as e:  # handed to the caller, raised there
            offer((None, e))

    thread = threading.Thread(target=produce, name="pcapstate-decode", daemon=True)
    thread.start()
    try:
        while True:
            try:
                batch, error = ahead.get(timeout=0.2)
            except queue.Empty:  # the reader waits: on a quiet stream, or decoding
                if not live:
                    continue
            else:
                if error is not None:
                    raise error
                if batch is None:
                    return
                yield batch
            if stop is not None and stop():
                if cut is not None:
                    cut[0] = True
                return
    finally:
        gone.set()
        thread.join(timeout=1.0)  # a reader blocked on a silent stream is left behind


def _eviction_warning(evicted: list[int], limit: int, parts: int = 1) -> list[str]:
    """`parts`: the table's partitions (analyze --dask), each with the limit."""
    if not sum(evicted):
        return []
    finished, attempts, open_ = evicted
    where = f", in each of {parts} partitions: each evicts among its own connections, so " \
        "the result is not one process's" if parts > 1 else ""
    return [f"the connection table was full ({limit:,} connections, --max-connections"
            f"{where}): "
            f"{sum(evicted):,} connections were evicted before the capture ended "
            f"({finished:,} finished, {attempts:,} handshake attempts, {open_:,} open); "
            "those that had not ended end as 'evicted', and later segments of theirs "
            "start new connections"]


def _coverage(records: int, accounting: Counter[str], unwrapped: Counter[str],
              reassembled: Counter[str]) -> dict[str, Any]:
    """What share of the capture's records the verdict covers, and what it does not: the
    records not decoded, by kind. `tcp_unread`: TCP was there but could not be read (a
    known encapsulation, or most records undecodable): the verdict cannot be "nothing
    wrong". `unwrapped`: the records read inside each tunnel or rarer link type;
    `reassembled`: the fragments read as part of a datagram a later fragment completed."""
    from pcapstate.decode.frames import not_read

    missed = {k: v for k, v in sorted((accounting - reassembled).items()) if not_read(k)}
    carried = sum(v for k, v in missed.items() if not_read(k) == "carrier")
    decoded = records - sum(missed.values())
    return {"records": records, "decoded": decoded,
            "share": decoded / records if records else 1.0,
            "not_decoded": {k.split(":", 1)[1]: v for k, v in missed.items()},
            "unwrapped": dict(sorted(unwrapped.items())),
            "tcp_unread": carried > 0 or sum(missed.values()) - carried > records / 2}


def _coverage_warning(coverage: dict[str, Any], accounting: Counter[str],
                      engine: str) -> list[str]:
    """What the coverage leaves out, in words; tshark is named when it may read it (an
    encapsulation, or a link type the fast decoder does not read)."""
    from pcapstate.decode.frames import not_read

    if not coverage["records"]:
        return ["the capture holds no packets: nothing was analysed"]
    missed = coverage["not_decoded"]
    if not missed:
        return []
    kinds = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in missed.items())
    tshark = engine == "fast" and any(not_read(k) == "carrier" for k in accounting)
    return [f"{coverage['records'] - coverage['decoded']:,} of {coverage['records']:,} records "
            f"({1 - coverage['share']:.1%}) were not decoded ({kinds}): the TCP connections "
            "inside them are not in this result"
            + ("; --engine tshark may read them" if tshark else "")]


def records_read(captures: list[Capture]) -> int:
    return sum(c.records for c in captures)


def _group(counts: Counter[str], prefix: str) -> dict[str, int]:
    return {k[len(prefix):]: v for k, v in sorted(counts.items()) if k.startswith(prefix)}


def _input_json(c: Capture) -> dict[str, Any]:
    return {
        "path": c.path,
        "format": c.format,
        "compressed": c.compressed,
        "compression": c.compression or None,
        "size": c.size,
        "records": c.records,
        "linktypes": sorted(c.linktypes),
        "snaplen": c.snaplen,
        "end_ts": c.end_ts,
        "dropped": c.dropped,
    }
