"""Folding retired connections into the summary's aggregates, in compiled code: counts by
end kind and closer, final states, anomalies, per-state duration histograms, the timeline
(derive/timeline.py), the handshakes' vantage, and which connections have a stuck
endpoint (derive/verdict.py's `stuck` then says how, for those only).
"""

import numpy as np

from pcapstate.derive.timeline import bin_of
from pcapstate.derive.verdict import (
    C_BOTH,
    C_NONE,
    C_SERVER,
    E_REFUSED,
    UNTOLD,
    closer_code,
    end_code,
    evidence_code,
    stretch,
    vantage_side,
)
from pcapstate.jit import borrowing, njit
from pcapstate.track.endpoints import handshake_gaps
from pcapstate.track.slots import (
    ANOMALY_NAMES,
    BY_PORT,
    BY_SYN,
    CLOSE_WAIT,
    CLOSED,
    CLOSER_NAMES,
    END_NAMES,
    EVIDENCE_NAMES,
    FIN_WAIT_1,
    ROLE_NAMES,
    STATES,
)
from pcapstate.vocab import WIRESHARK_ANALYSIS, Censor, codes

borrowed = borrowing()

#: Duration histograms: bins per decade of seconds, from FLOOR up; bin 0 holds every
#: duration up to FLOOR, bin b > 0 those from FLOOR * 10 ** ((b - 1) / BINS_PER_DECADE) on.
BINS_PER_DECADE = 100
FLOOR = 1e-6
NBINS = 2000  # 1 us .. 10**14 s, plus the <= 1 us bin
CENSORS = list(Censor)
_CEN = codes(Censor)
COMPLETE, RIGHT, LEFT, BOTH = (_CEN[Censor.COMPLETE], _CEN[Censor.RIGHT], _CEN[Censor.LEFT],
                               _CEN[Censor.BOTH])


def new_folds() -> dict[str, np.ndarray]:
    """The aggregates `fold` adds to (derive/summary.py reads them)."""
    z, states = np.zeros, len(STATES)
    return {"by_roles": z(len(ROLE_NAMES), np.int64),
            "end_closer": z((len(END_NAMES), len(CLOSER_NAMES)), np.int64),
            "evidence": z(len(EVIDENCE_NAMES), np.int64),
            "final": z((2, states), np.int64), "anomalies": z(len(ANOMALY_NAMES), np.int64),
            "counts": z((states, len(CENSORS)), np.int64),
            "hist": z((states, len(CENSORS), NBINS + 1), np.int64),
            "max": np.zeros(states), "min": np.full(states, np.inf),
            "max_censored": np.zeros(states),
            "sides": z(UNTOLD + 1, np.int64), "round_trip": np.array([np.inf, 0.0]),
            "wireshark": z(len(WIRESHARK_ANALYSIS), np.int64)}


@njit(cache=True, nogil=True)
def _handshake(r, sides, round_trip):
    """Where the capture saw the handshake (vantage_side), counted into `sides`, and its
    round trip into `round_trip` (shortest, longest), when it was all captured."""
    syn_rtt, ack_gap = handshake_gaps(r)
    if syn_rtt < 0:
        return
    side = vantage_side(syn_rtt, ack_gap)
    sides[side] += 1
    if side != UNTOLD:
        round_trip[0] = min(round_trip[0], syn_rtt + ack_gap)
        round_trip[1] = max(round_trip[1], syn_rtt + ack_gap)


@njit(cache=True, nogil=True)
def _end_kind(r):
    """verdict.end_code of a packed record."""
    return end_code(r.reset_by, r.fin_seq[0] != -1, r.fin_seq[1] != -1, r.isn[1] != -1,
                     r.syn_acked[1] != 0, r.roles != BY_SYN, r.evicted != 0)


@njit(cache=True, nogil=True)
def _closer(r, kind):
    """verdict.closer_code of a packed record whose end kind is `kind`, whether the closer
    aborted (no FIN first: its RST ended the connection), and verdict.evidence_code."""
    active = [False, False]
    for e in range(2):
        for k in range(r.ntr[e]):
            if r.tr_st[e, k] == FIN_WAIT_1:
                active[e] = True
    code = closer_code(active[0], active[1], r.reset_by, kind == E_REFUSED)
    aborted = code != C_NONE and not (active[0] or active[1])
    peer = 0 if code == C_SERVER else 1  # for C_BOTH, either: both closed in the capture
    open_seen = r.roles != BY_PORT or r.payload[peer] > 0 or r.fin_seq[peer] != -1 \
        or code == C_BOTH
    return code, aborted, evidence_code(code, aborted, r.inferred != 0, open_seen)


@njit(cache=True, nogil=True)
def fold(rows, times, limits, by_roles, end_closer, evidence, final, anomalies, counts, hist,
         dmax, dmin, dmax_censored, sides, round_trip, wireshark, stuck, kinds, closers,
         aborted, evidences, origin, tl_delta, tl_width):
    """Fold each retired connection (`rows`, retired at `times`) into the aggregates
    (new_folds) and the timeline (derive/timeline.py). Each endpoint's intervals: each
    state (but CLOSED) from its transition to the next, or to the connection's retirement
    (verdict.stretch).
    stuck[i, e], a bit mask, gets bit k when endpoint e's interval from transition k lasted
    longer than its state's limit (`limits`, NaN: no limit), or was a CLOSE_WAIT inferred
    to have outlived its peer's socket (endpoints.closed_before; a state with a limit);
    kinds[i], closers[i], aborted[i] and evidences[i] get connection i's end kind, closer,
    whether the closer aborted, and how the closer is known (-1: no closer)."""
    # taken by functions for each connection (jit.borrowing)
    tl_delta, tl_width = borrowed(tl_delta), borrowed(tl_width)
    sides, round_trip = borrowed(sides), borrowed(round_trip)
    for i in range(len(rows)):
        r, end = rows[i], times[i]
        kinds[i] = _end_kind(r)
        closers[i], aborted[i], evidences[i] = _closer(r, kinds[i])
        end_closer[kinds[i], closers[i]] += 1
        if evidences[i] >= 0:
            evidence[evidences[i]] += 1
        by_roles[r.roles] += 1
        _handshake(r, sides, round_trip)
        for a in range(len(wireshark)):
            wireshark[a] += r.ws[a]
        for a in range(anomalies.shape[0]):
            anomalies[a] += r.anom[a]
        stuck[i, 0] = stuck[i, 1] = 0
        for e in range(2):
            final[e, r.st[e]] += 1
            n = r.ntr[e]
            for k in range(n):
                state = r.tr_st[e, k]
                if state == CLOSED:
                    continue
                start, stop = stretch(r, e, k, end)
                left = k == 0 and r.left[e]
                if k + 1 < n:
                    censor = LEFT if left else COMPLETE
                    tl_delta[state, bin_of(stop, origin, tl_delta, tl_width)] -= 1
                else:
                    censor = BOTH if left else RIGHT
                tl_delta[state, bin_of(start, origin, tl_delta, tl_width)] += 1
                d = stop - start
                counts[state, censor] += 1
                b = 0 if d <= FLOOR else np.int64(np.log10(d / FLOOR) * BINS_PER_DECADE) + 1
                hist[state, censor, min(b, NBINS)] += 1
                if censor == COMPLETE:
                    dmax[state] = max(dmax[state], d)
                    dmin[state] = min(dmin[state], d)
                else:
                    dmax_censored[state] = max(dmax_censored[state], d)
                if not np.isnan(limits[state]) and (
                        d > limits[state] or r.inferred and state == CLOSE_WAIT and left):
                    stuck[i, e] |= 1 << k
