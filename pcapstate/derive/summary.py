"""Receives the retired connections and holds everything the result reports: the
aggregates derive/fold.py adds to, the findings (stuck endpoints grouped by state, service
and role), the timeline; and passes the connections on as records, briefs or Zeek's view to
whoever asked.

Nothing here grows with the number of connections: the durations go into fixed log-scale
histograms and each findings group keeps only its worst examples.
"""

import heapq
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, NamedTuple

import numpy as np

from pcapstate import jit
from pcapstate.derive import records
from pcapstate.derive.diagnoses import Diagnoser, close_wait_leaks, worst_first
from pcapstate.derive.fold import BINS_PER_DECADE, CENSORS, COMPLETE, FLOOR, fold, new_folds
from pcapstate.derive.rules import groups, service_keys
from pcapstate.derive.timeline import Timeline
from pcapstate.derive.verdict import Stuck, service_of, stuck
from pcapstate.settings import Settings
from pcapstate.track.slots import (
    ANOMALY_NAMES,
    CLOSER_NAMES,
    END_NAMES,
    EVIDENCE_NAMES,
    ROLE_NAMES,
    STATES,
)
from pcapstate.track.zeek_view import CONN_STATES
from pcapstate.vocab import (
    VANTAGE_MIN_SHARE,
    VANTAGE_MIN_TELLING,
    WIRESHARK_ANALYSIS,
    Censor,
    State,
    Tier,
)

_EXAMPLES = 10  # worst stuck connections kept per findings group
#: Records whose JSON text is made at a time: memory stays low, and each made at a time
#: costs some Python (the benchmark capture, 24 paired runs of --json: 1,024 against 512,
#: 0.10-0.18 s less (the pairs' median difference), 4 MiB more at the peak, 334 MiB; 2,048:
#: 11 MiB more; 4,096 once peaked 25 MiB above 512 with --jsonl)
_CHUNK = 1024
#: Connections handed on at a time when no JSON text is made: Parquet's arrays and the
#: conn.log's columns cost as much for a few rows as for many (the benchmark capture,
#: interleaved runs, 4,096 against 512: --parquet 2.36 against 2.67 s, --zeek-conn 1.94
#: against 2.07 s, by medians; the same peak memory)
_COLUMNS_CHUNK = 4096


#: A batch's handing on (Summary._hand_on), which yields what is left to do after each part
HandOn = Callable[[], Iterator[Callable[[], object]]]


class _Batch(NamedTuple):
    """A batch of retired connections as Summary.take has them (each array a row each)."""

    rows: np.ndarray
    views: np.ndarray
    ended: dict[int, list[np.void]]
    kinds: np.ndarray
    closers: np.ndarray
    aborted: np.ndarray
    evidences: np.ndarray
    picks: np.ndarray


def bin_value(b: int) -> float:
    """The geometric middle of histogram bin b (derive/fold.py): what a percentile that
    falls in it reports; 0 for the bin of durations up to a microsecond."""
    if b == 0:
        return 0.0
    return FLOOR * 10 ** ((b - 0.5) / BINS_PER_DECADE)


def _durations_json(f: dict[str, np.ndarray], s: int) -> dict[str, Any]:
    """How long endpoints spent in state s, kept apart by censoring."""
    counts = {c: int(n) for c, n in zip(CENSORS, f["counts"][s], strict=True)}
    complete, total = counts[Censor.COMPLETE], sum(counts.values())
    hist = f["hist"][s]
    lo, hi = float(f["min"][s]), float(f["max"][s])

    def percentile(p: float) -> float | None:
        """Nearest rank, of the complete durations, to the histogram's bin."""
        if not complete:
            return None
        rank = max(1, math.ceil(p / 100 * complete))
        b = int(np.searchsorted(np.cumsum(hist[COMPLETE]), rank))
        return min(max(bin_value(b), lo), hi)

    return {
        "count": total,
        "complete": complete,
        "right_censored": counts[Censor.RIGHT],
        "left_censored": counts[Censor.LEFT],
        "both_censored": counts[Censor.BOTH],
        "p50": percentile(50),
        "p90": percentile(90),
        "p99": percentile(99),
        "max": hi if complete else None,
        "max_censored": float(f["max_censored"][s]) if total - complete else None,
        "histogram": {c.value: {str(int(b) - 1): int(hist[j, b])
                                for b in np.flatnonzero(hist[j])}
                      for j, c in enumerate(CENSORS) if hist[j].any()},
    }


@dataclass(slots=True)
class FindingGroup:
    """Stuck endpoints that share a state, a service (verdict.service_of), a role, and
    whether their state was inferred."""

    state: State
    service: str
    role: str
    inferred: bool
    count: int = 0
    oldest: float = 0.0
    first: float = math.inf  # the earliest stretch's start
    last: float = 0.0  # the latest stretch's end
    outcomes: Counter[str] = field(default_factory=Counter)
    spans: dict[str, list[float]] = field(default_factory=dict)  # per outcome: the shortest
    #                                                             and longest time in the state
    closers: Counter[str] = field(default_factory=Counter)  # who closed their connection first
    worst: list[tuple[float, int, Stuck]] = field(default_factory=list)  # a min-heap, longest

    def add(self, s: Stuck, closer: str) -> None:
        self.count += 1
        self.oldest = max(self.oldest, s.duration)
        self.first, self.last = min(self.first, s.since), max(self.last, s.since + s.duration)
        self.outcomes[s.outcome] += 1
        span = self.spans.setdefault(s.outcome, [s.duration, s.duration])
        span[:] = min(span[0], s.duration), max(span[1], s.duration)
        self.closers[closer] += 1
        item = (s.duration, -s.conn_id, s)
        if len(self.worst) < _EXAMPLES:
            heapq.heappush(self.worst, item)
        elif item[:2] > self.worst[0][:2]:
            heapq.heapreplace(self.worst, item)

    def to_json(self, at_end: int) -> dict[str, Any]:
        """`at_end`: how many endpoints of the service and role were in the state at capture
        end, stuck or not yet."""
        return {
            "state": self.state.value,
            "service": self.service,
            "role": self.role,
            "inferred": self.inferred,
            "count": self.count,
            "still_open": self.outcomes["open"],
            "at_capture_end": self.outcomes["open"] if self.inferred else at_end,
            "oldest": self.oldest,
            "first_ts": self.first,
            "last_ts": self.last,
            "outcomes": dict(sorted(self.outcomes.items())),
            "outcome_durations": {k: {"min": lo, "max": hi}
                                  for k, (lo, hi) in sorted(self.spans.items())},
            "closed_first_by": _ranked(self.closers, np.array(list(self.closers.values()))),
            "examples": [asdict(s) | {"state": s.state.value}
                         for _, _, s in sorted(self.worst, reverse=True)],
        }


class Summary:
    """Takes the connections a track.connections.Tracker retires (`take`, its Retire)."""

    def __init__(self, settings: Settings,
                 on_record: Callable[[dict[str, Any]], None] | None = None,
                 on_brief: Callable[[list[list[Any]]], None] | None = None,
                 on_zeek: Callable[[dict[str, Any]], None] | None = None,
                 on_columns: Callable[[dict[str, Any], records.ZeekViews],
                                      Callable[[], object] | None] | None = None,
                 wireshark: bool = False, tunnels: Sequence[dict[str, Any]] = (),
                 on_lines: Callable[[memoryview], object] | None = None,
                 line_end: str = "\n",
                 behind: Callable[[HandOn], None] | None = None) -> None:
        """`on_record` receives each connection's record (derive/records.py); `on_brief`
        the connections in brief (records.BRIEF_FIELDS), a list at a time; `on_zeek` what a
        conn.log needs of them, a column each (records.conn_entries); `on_columns` the
        records' fields a column each (records.columns) and their Zeek views
        (records.zeek_views), which may return what is left to do after (a function:
        ParquetSink.take); `on_lines` the records as JSON Lines' text (records.lines,
        which on_record's dicts are read from), many lines at a time, each ending with
        `line_end`. `behind`, if given, takes a function that hands a batch on to those
        four, to run later (in order, in other threads: render/output.py Behind.later).
        `wireshark`: the tshark engine counted Wireshark's analysis flags of each segment.
        `tunnels`: the tunnels met so far (decode/unwrap.py), by number - 1."""
        if not settings.zeek and (on_record or on_lines or on_zeek or on_columns):
            raise ValueError("records and conn.logs hold Zeek's view: Settings(zeek=True)")
        self.tunnels = tunnels
        self.on_record = on_record
        self.on_lines, self.line_end = on_lines, line_end
        self.behind = behind
        self.on_brief = on_brief
        self.on_zeek = on_zeek
        self.on_columns = on_columns
        self.wireshark = wireshark
        self.folds = new_folds()
        self.limits = np.array([settings.stuck_after.get(st, np.nan) for st in STATES])
        self.timeline = Timeline()
        self.diagnoser = Diagnoser(tunnels)
        self.groups: dict[tuple[State, str, str, bool], FindingGroup] = {}
        self.at_end: Counter[tuple[State, str, str]] = Counter()  # FindingGroup.to_json's
        self.zeek = settings.zeek  # Zeek's views are followed: handed on with the rows
        self.zeek_states = np.zeros(len(CONN_STATES), np.int64)  # its conn_states counted

    def take(self, rows: np.ndarray, views: np.ndarray, times: np.ndarray,
             ended: dict[int, list[np.void]]) -> None:
        """Fold in a batch of retired connections (track/connections.py Retire), report
        their stuck endpoints, and pass them on."""
        n = len(rows)
        marks = np.zeros((n, 2), np.uint32)
        kinds, closers = np.empty(n, np.int8), np.empty(n, np.int8)
        aborted, evidences = np.empty(n, np.bool_), np.empty(n, np.int8)
        tl, f = self.timeline, self.folds
        tl.start(float(times.min()))  # analyze has started it at the first record
        fold(rows, times, self.limits, f["by_roles"], f["end_closer"], f["evidence"],
             f["final"], f["anomalies"], f["counts"], f["hist"], f["max"], f["min"],
             f["max_censored"], f["sides"], f["round_trip"], f["wireshark"], marks, kinds,
             closers, aborted, evidences, tl.origin, tl.delta, tl.width)
        if self.zeek:
            states = records.zeek_columns(views)[0]
            if ended:
                later = np.array([v for vs in ended.values() for v in vs], views.dtype)
                states = np.concatenate([states, records.zeek_columns(jit.records(later))[0]])
            self.zeek_states += np.bincount(states, minlength=len(CONN_STATES))
        for i in np.flatnonzero(marks.any(axis=1)):
            for s in stuck(rows[i], marks[i], float(times[i]), self.tunnels):
                key = (s.state, s.service, s.role, s.inferred)
                self.groups.setdefault(key, FindingGroup(*key)).add(s, CLOSER_NAMES[closers[i]])
        final = rows["st"]
        watching = ~np.isnan(self.limits[final])
        keys = service_keys(rows) if watching.any() else rows[:0]
        for e, role in enumerate(records.ROLES):  # by service, not a row at a time (a flood)
            watched = np.flatnonzero(watching[:, e])
            for s in np.unique(final[watched, e]):
                picked = watched[final[watched, e] == s]
                for i, members in zip(*groups(keys, picked), strict=True):
                    self.at_end[STATES[s], service_of(rows[picked[i]], self.tunnels),
                                role] += len(members)
        picks = self.diagnoser.take(rows, times, kinds, closers)
        if self.on_brief is not None:
            self.on_brief(records.briefs(rows, kinds, closers))
        if self.on_zeek or self.on_lines or self.on_record or self.on_columns:
            hand_on = partial(self._hand_on, _Batch(rows, views, ended, kinds, closers,
                                                    aborted, evidences, picks))
            if self.behind is None:
                for then in hand_on():
                    then()
            else:
                self.behind(hand_on)

    def _hand_on(self, batch: _Batch) -> Iterator[Callable[[], object]]:  # HandOn's
        """A batch's connections handed on (on_zeek, on_lines, on_record, on_columns), a
        part of _CHUNK at a time (_COLUMNS_CHUNK when no JSON text is made); yields what is
        left to do after each part, in order: the JSON text's making and writing, Parquet's
        writing (render/output.py Behind runs that in a second thread)."""
        b, texts = batch, self.on_record or self.on_lines
        step = _CHUNK if texts else _COLUMNS_CHUNK
        for start in range(0, len(b.rows), step):
            part = slice(start, start + step)
            zeek = records.zeek_views(b.rows[part], b.views[part], b.ended)
            if self.on_zeek is not None:
                self.on_zeek(records.conn_entries(b.rows[part], zeek, self.tunnels))
            if not texts and self.on_columns is None:
                continue
            cols = records.columns(b.rows[part], b.kinds[part], b.closers[part],
                                   b.aborted[part], b.evidences[part], self.wireshark,
                                   self.tunnels,
                                   None if self.on_columns is None else b.picks[part])
            if texts:  # once, for both
                make = records.lines(cols, zeek, self.tunnels, self.line_end)
                if self.on_record is not None:  # the text now, read back
                    text = make()
                    for rec in records.parse(text, self.line_end):
                        self.on_record(rec)
                    if self.on_lines is not None:
                        yield partial(self.on_lines, text)
                elif self.on_lines is not None:
                    yield partial(_made, self.on_lines, make)
            if self.on_columns is not None and (write := self.on_columns(cols, zeek)):
                yield write

    def findings(self) -> list[dict[str, Any]]:
        """Worst first: most stuck endpoints, then the oldest."""
        groups = sorted(self.groups.values(),
                        key=lambda g: (-g.count, -g.oldest, g.state, g.service, g.role))
        return [g.to_json(self.at_end[g.state, g.service, g.role]) for g in groups]

    def vantage(self) -> dict[str, Any]:
        """Where the capture was taken, by the handshakes (verdict.vantage_side)."""
        near_client, between, near_server, untold = (int(n) for n in self.folds["sides"])
        shortest, longest = (float(t) for t in self.folds["round_trip"])
        measured = near_client + between + near_server
        sides = {"client": near_client, "between": between, "server": near_server}
        enough = measured >= max(VANTAGE_MIN_TELLING, VANTAGE_MIN_SHARE * (measured + untold))
        estimate = "unknown" if not enough else next(  # where 80% were seen, else mixed
            (side for side, n in sides.items() if n >= 0.8 * measured), "mixed")
        return {"estimate": estimate, "handshakes": measured + untold,
                "near_client": near_client, "between": between, "near_server": near_server,
                "too_close_to_tell": untold,
                "round_trip_min": shortest if measured else None,
                "round_trip_max": longest if measured else None}

    def to_json(self, evicted: list[int] | None = None) -> dict[str, Any]:
        """`evicted`: the table's evictions by tier (vocab.Tier)."""
        evicted = evicted or [0] * len(Tier)
        f, findings = self.folds, self.findings()
        end_closer = f["end_closer"]
        by_end = _ranked(END_NAMES, end_closer.sum(axis=1))
        return {
            "connections": {
                "total": int(f["by_roles"].sum()),
                "by_end": by_end,
                "by_closer": _ranked(CLOSER_NAMES, end_closer.sum(axis=0)),
                "by_closer_evidence": _ranked(EVIDENCE_NAMES, f["evidence"]),
                "by_end_and_closer": {kind: _by_name(CLOSER_NAMES,
                                                     end_closer[END_NAMES.index(kind)])
                                      for kind in by_end},
                "roles_from": _ranked(ROLE_NAMES, f["by_roles"]),
                "mid_stream": int(f["by_roles"][1:].sum()),
                "evicted": {"total": sum(evicted), **{
                    t.name.lower(): n for t, n in zip(Tier, evicted, strict=True)}},
                "final_states": {role: _ranked(STATES, f["final"][e])
                                 for e, role in enumerate(records.ROLES)},
                "anomalies": _by_name(ANOMALY_NAMES, f["anomalies"]),
                **({"zeek_conn_states": _ranked(CONN_STATES, self.zeek_states)}
                   if self.zeek else {}),
                **({"wireshark_analysis": _by_name(WIRESHARK_ANALYSIS, f["wireshark"])}
                   if self.wireshark else {}),
            },
            "findings": findings,
            "diagnoses": worst_first(close_wait_leaks(findings) + self.diagnoser.to_json()),
            "vantage": self.vantage(),
            "durations": {st.value: _durations_json(f, s) for s, st in enumerate(STATES)
                          if f["counts"][s].any()},
        }


def _made(to: Callable[[memoryview], object], make: Callable[[], memoryview]) -> None:
    """The text made, then handed on `to`."""
    to(make())


def _ranked(names: Iterable[Any], counts: np.ndarray) -> dict[Any, int]:
    """Each name's count, largest first, ties by name, zeros left out: the same order
    whatever order the counts came in."""
    return dict(sorted(((k, v) for k, v in zip(names, counts.tolist(), strict=True) if v),
                       key=lambda kv: (-kv[1], kv[0])))


def _by_name(names: Iterable[Any], counts: np.ndarray) -> dict[Any, int]:
    """Each name's count, in alphabetical order, zeros left out."""
    return {k: v for k, v in sorted(zip(names, counts.tolist(), strict=True)) if v}
