"""The diagnoses of the connection lifecycle (docs/diagnoses.md, part 2): slow connects,
full accept queues, handshakes given up, refused bursts, stalled receivers, TIME_WAIT
pressure. Rules on the packed records of retired connections, in bulk (derive/diagnoses.py
owns the framework: the catalogue, Diagnosis, and the Diagnoser that calls `take`).
"""

from typing import Any

import numpy as np

from pcapstate.derive.records import ROLES, _host
from pcapstate.track.slots import BY_SYN, CLOSED, SYN_RCVD, SYN_SENT, TIME_WAIT
from pcapstate.words import count, seconds, when

#: A receiver that advertises a zero window for longer than this has stalled.
STALL_AFTER = 1.0
#: Refused connections of a service more than this apart are two bursts.
BURST_GAP = 10.0
#: Linux's default ephemeral port range (net.ipv4.ip_local_port_range 32768-60999).
DEFAULT_PORTS = 28_232


def service_keys(rows: np.ndarray) -> np.ndarray:
    """Each row's service (the server's address, port and tunnel) as numbers, a row each:
    what `groups` groups by."""
    return np.stack([rows["ip_hi"][:, 1], rows["ip_lo"][:, 1], rows["port"][:, 1].astype(
        np.uint64), rows["tunnel"].astype(np.uint64), rows["v6"].astype(np.uint64)], axis=1)


def groups(keys: np.ndarray, picked: np.ndarray, rows: np.ndarray | None = None,
           host: np.ndarray | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """The rows `picked` grouped by service (`keys`: service_keys of all the rows) and,
    given `host` (an endpoint index per picked row), by that endpoint's address in `rows`
    too: the index (into `picked`) of each group's first row, and each group's members
    (indices into `picked`)."""
    keys = keys[picked]
    if host is not None and rows is not None:
        keys = np.concatenate([keys, np.stack([rows["ip_hi"][picked, host], rows["ip_lo"][
            picked, host], host.astype(np.uint64)], axis=1)], axis=1)
    # one number a key (np.unique on rows is slow); a group whose keys differ (two keys on
    # one number) is split the slow way
    mixed = np.zeros(len(keys), np.uint64)
    for j in range(keys.shape[1]):
        mixed = mixed * np.uint64(0x9E3779B97F4A7C15) + keys[:, j]
    _, first, inverse = np.unique(mixed, return_index=True, return_inverse=True)
    if (keys != keys[first][inverse]).any():
        _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    if not len(first):
        return first, []
    order = np.argsort(inverse, kind="stable")
    return first, np.split(order, np.cumsum(np.bincount(inverse, minlength=len(first)))[:-1])


def last_transitions(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each endpoint's last transition: its state, whether a timer made it, its time, and
    the state before it (-1 none); arrays shaped (rows, 2)."""
    k = np.maximum(rows["ntr"].astype(np.int64) - 1, 0)[:, :, None]
    before = np.maximum(k - 1, 0)
    state = np.take_along_axis(rows["tr_st"], k, 2)[:, :, 0]
    timer = np.take_along_axis(rows["tr_timer"], k, 2)[:, :, 0] == 1
    ts = np.take_along_axis(rows["tr_ts"], k, 2)[:, :, 0]
    prev = np.where(k[:, :, 0] > 0, np.take_along_axis(rows["tr_st"], before, 2)[:, :, 0], -1)
    return state, timer, ts, prev


class Lifecycle:
    """The part-2 rules, adding to `diagnoser`'s diagnoses (derive/diagnoses.py)."""

    def __init__(self, diagnoser: Any) -> None:
        self.diagnoser = diagnoser
        self.get, self.example = diagnoser.get, diagnoser.example
        self.service = diagnoser.service
        self.refused: dict[str, list[list[float]]] = {}  # service -> [[first, last, n]]
        self.accepted: dict[str, list[float]] = {}  # service -> [first, last] accepted
        # (client host, service) -> {second: endpoints entering TIME_WAIT}, ports, reuses
        self.tw: dict[tuple[str, str, int], dict[str, Any]] = {}

    def take(self, rows: np.ndarray, keys: np.ndarray, times: np.ndarray, refused: np.ndarray,
             overflow_rst: np.ndarray) -> None:
        state, timer, ts, prev = last_transitions(rows)
        gave_up = (state == CLOSED) & timer & ((prev == SYN_SENT) | (prev == SYN_RCVD))
        for i, e in zip(*np.nonzero(gave_up), strict=True):
            self._gave_up(rows[i], int(e), float(ts[i, e]))
        syn = rows["roles"] == BY_SYN
        done = syn & (rows["syn_acked"][:, 0] != 0) & (rows["syn_acked"][:, 1] != 0)
        for i in np.flatnonzero(done & (rows["syns"][:, 0] > 1)):
            self._slow_connect(rows[i])
        for i in np.flatnonzero((rows["synack_after_ack"] > 0) | overflow_rst):
            self._overflow(rows[i], bool(overflow_rst[i]))
        for i in np.flatnonzero(refused):
            self._refused(rows[i])
        picked = np.flatnonzero(done)  # the first and last accepted of each service
        first, members = groups(keys, picked)
        starts = rows["first_ts"][picked]
        for i, mine in zip(first, members, strict=True):
            span = self.accepted.setdefault(self.service(rows[picked[i]]), [np.inf, 0.0])
            span[0] = min(span[0], float(starts[mine].min()))
            span[1] = max(span[1], float(starts[mine].max()))
        stalled = rows["zw_stalls"] > 0
        for i, e in zip(*np.nonzero(stalled), strict=True):
            self._stall(rows[i], int(e), float(times[i]))
        self._time_wait(rows, keys, times)

    def _gave_up(self, row: np.void, e: int, at: float) -> None:
        first, tries = float(row["tr_ts"][e, 0]), int(row["syns"][e])
        what = "SYN" if e == 0 else "SYN-ACK"
        d = self.get("handshake_timeout", row, e, "the backoff of the retransmissions: the "
                     "next was due and never came")
        d.add(first, at, lambda: self.example(row, [
            (first, f"the {ROLES[e]}'s first {what}"),
            (float(row["syn_ts"][e]), f"its last, the {tries}th"),
            (at, f"the {ROLES[e]} gives up: its next retry was due")]))
        d.numbers["sent_max"] = max(d.numbers.get("sent_max", 0), tries)
        d.numbers["gave_up_after_max"] = max(d.numbers.get("gave_up_after_max", 0.0),
                                             at - first)

    def _slow_connect(self, row: np.void) -> None:
        first, last = float(row["tr_ts"][0, 0]), float(row["syn_ts"][0])
        added = max(last - first, 0.0)
        # the listener answered only the SYN sent again: the first never reached it (or
        # its answer was not captured); it answered twice: its first SYN-ACK was lost
        cause = "syn_dropped" if row["syns"][1] <= 1 else "synack_lost"
        d = self.get("syn_retransmitted", row, 0)
        d.add(first, last, lambda: self.example(row, [
            (first, "the client's first SYN"),
            (last, f"the SYN that got an answer, {seconds(added)} later "
                   f"({int(row['syns'][0]) - 1} retries)")]) | {"added_latency": added})
        n = d.numbers
        n["added_latency_min"] = min(n.get("added_latency_min", added), added)
        n["added_latency_max"] = max(n.get("added_latency_max", added), added)
        n[cause] = n.get(cause, 0) + 1
        n.setdefault("syn_dropped", 0)
        n.setdefault("synack_lost", 0)

    def _overflow(self, row: np.void, rst: bool) -> None:
        ack = float(row["tr_ts"][1, min(1, int(row["ntr"][1]) - 1)])
        packets = [(float(row["syn_ts"][1]), "the listener's SYN-ACK"),
                   (ack, "the client's ACK completing the handshake")]
        if rst:
            packets.append((float(row["last_ts"]), "RST from the listener: "
                            "tcp_abort_on_overflow=1"))
        else:
            packets.append((float(row["syn_ts"][1]), f"the SYN-ACK sent again "
                            f"{int(row['synack_after_ack'])} times after that ACK: dropped"))
        d = self.get("accept_queue_overflow", row, 1)
        d.add(packets[0][0], max(p[0] for p in packets), lambda: self.example(row, packets))
        key = "by_rst" if rst else "by_drop"
        d.numbers[key] = d.numbers.get(key, 0) + 1
        d.numbers.setdefault("by_rst", 0)
        d.numbers.setdefault("by_drop", 0)

    def _refused(self, row: np.void) -> None:
        t = float(row["first_ts"])
        bursts = self.refused.setdefault(self.service(row), [])
        if bursts and t - bursts[-1][1] <= BURST_GAP:
            bursts[-1][1] = max(bursts[-1][1], t)
            bursts[-1][2] += 1
        else:
            bursts.append([t, t, 1])
        d = self.get("refused_burst", row, 1)
        d.add(t, float(row["last_ts"]), lambda: self.example(row, [
            (t, "the client's SYN"), (float(row["last_ts"]), "RST: nothing listening")]))

    def _stall(self, row: np.void, e: int, end: float) -> None:
        since = float(row["zw_since"][e])
        open_stall = end - since if not np.isnan(since) else 0.0
        longest = max(float(row["zw_longest"][e]), open_stall)
        if longest < STALL_AFTER:
            return
        outcome = "recovered" if np.isnan(since) else (
            "reset" if row["reset_by"] >= 0 else "closed" if row["fin_seq"][e] != -1
            else "still stalled at the end")
        d = self.get("zero_window_stall", row, e)
        d.add(float(row["first_ts"]), end, lambda: self.example(row, [
            (float(row["first_ts"]), "the connection's first segment"),
            (end, f"the {ROLES[e]} advertised a zero window {int(row['zw_stalls'][e])} "
                  f"times, the longest for {seconds(longest)}; {outcome}")]) | {
            "longest": longest, "outcome": outcome})
        n = d.numbers
        n["longest"] = max(n.get("longest", 0.0), longest)
        n[outcome.split()[0]] = n.get(outcome.split()[0], 0) + 1

    def _time_wait(self, rows: np.ndarray, keys: np.ndarray, times: np.ndarray) -> None:
        """The endpoints that were in TIME_WAIT, from when they entered it until they left
        (their timer, a new connection on the 4-tuple, or the capture's end), per host,
        service and side: second by second."""
        entered = rows["tr_st"] == TIME_WAIT
        picked, side = np.nonzero(entered.any(axis=2))
        if not len(picked):
            return
        k = np.argmax(entered[picked, side], axis=1)
        at = rows["tr_ts"][picked, side, k]
        later = k + 1 < rows["ntr"][picked, side]
        left = np.where(later, rows["tr_ts"][picked, side, np.minimum(k + 1, rows.dtype[
            "tr_ts"].shape[1] - 1)], times[picked])
        first, members = groups(keys, picked, rows, side)
        ports = rows["port"][picked, side]
        for i, mine in zip(first, members, strict=True):
            e, row = int(side[i]), rows[picked[i]]
            key = (_host(int(row["v6"]), int(row["ip_hi"][e]), int(row["ip_lo"][e])),
                   self.service(row), e)
            tw = self.tw.setdefault(key, {"entered": {}, "change": {}, "ports": [65536, -1],
                                          "reused": 0, "n": 0, "examples": []})
            reused = rows["tw_reused"][picked[mine]] != 0  # those first, as examples
            wanted = 5 - len(tw["examples"])
            for j in [*mine[reused][:wanted], *mine[~reused][:wanted]][:wanted]:
                row = rows[picked[j]]
                tw["examples"].append(self.example(row, [
                    (float(row["fin_ts"][e]), f"the {ROLES[e]}'s FIN, the first"),
                    (float(at[j]), f"the {ROLES[e]} in TIME_WAIT"),
                    (float(left[j]), "a new connection on the 4-tuple while in TIME_WAIT"
                     if row["tw_reused"] else "TIME_WAIT over, or the capture's end")]))
            n = len(mine)  # entered, left: one count a second
            values, inverse = np.unique(np.concatenate([at[mine], left[mine]]).astype(
                np.int64), return_inverse=True)
            into = np.bincount(inverse[:n], minlength=len(values))
            out = np.bincount(inverse[n:], minlength=len(values))
            for second, a, b in zip(values.tolist(), into.tolist(), out.tolist(), strict=True):
                if a:
                    tw["entered"][second] = tw["entered"].get(second, 0) + a
                if a != b:
                    tw["change"][second] = tw["change"].get(second, 0) + a - b
            tw["ports"] = [min(tw["ports"][0], int(ports[mine].min())),
                           max(tw["ports"][1], int(ports[mine].max()))]
            tw["reused"] += int(rows["tw_reused"][picked[mine]].sum())
            tw["n"] += len(mine)

    def finish(self) -> None:
        """What needs every connection first: bursts' accepted neighbours, TIME_WAIT peaks."""
        for (name, service, _side, _why), d in self.diagnoser.found.items():
            if name == "refused_burst":
                accepted = self.accepted.get(service)
                bursts = self.refused.get(service, [])
                d.numbers |= {
                    "bursts": [{"from": a, "to": b, "count": n} for a, b, n in bursts[:20]],
                    "accepted_before_and_after": bool(
                        accepted and accepted[0] < bursts[0][0] and accepted[1] > bursts[-1][1]),
                    "ever_accepted": accepted is not None}
        for (host, service, e), tw in self.tw.items():
            peak, held = 0, 0
            for t in sorted(tw["change"]):  # endpoints in TIME_WAIT, second by second
                held += tw["change"][t]
                peak = max(peak, held)
            times = sorted(tw["entered"])
            span = tw["ports"][1] - tw["ports"][0] + 1 if e == 0 else DEFAULT_PORTS
            rate = max(tw["entered"].values())
            if not (peak >= DEFAULT_PORTS // 2 or tw["reused"]
                    or (e == 0 and span >= 100 and peak >= 0.9 * span)):
                continue
            d = self.diagnoser.named("time_wait_pressure", service, ROLES[e])
            d.count, d.first, d.last = tw["n"], float(times[0]), float(times[-1]) + 1
            d.examples = tw["examples"]
            d.numbers |= {"host": host, "time_wait_peak": peak, "peak_rate_per_s": rate,
                          "ports_seen": [tw["ports"][0], tw["ports"][1]] if e == 0 else None,
                          "share_of_ports": peak / span, "reused_in_time_wait": tw["reused"]}


def verdict(d: Any) -> str | None:
    """The part-2 diagnoses in one sentence (None for another's)."""
    n, service, side, num = count(d.count, "connection"), d.service, d.side, d.numbers
    span = f"from {when(d.first)} to {when(d.last)}"
    if d.name == "handshake_timeout":
        what = "SYN" if side == "client" else "SYN-ACK"
        return (f"{service}: {n} timed out in the handshake ({span}): the {side} sent its "
                f"{what} up to {num['sent_max']} times without an answer and gave up, up to "
                f"{seconds(num['gave_up_after_max'])} after the first")
    if d.name == "syn_retransmitted":
        return (f"{service}: {n} connected only after the client sent its SYN again, "
                f"{seconds(num['added_latency_min'])} to {seconds(num['added_latency_max'])} "
                f"added ({span}): {num['syn_dropped']:,} first SYNs never answered (dropped "
                f"before the listener), {num['synack_lost']:,} answered but the SYN-ACK lost")
    if d.name == "accept_queue_overflow":
        return (f"{service}: the listener's accept queue was full for {n} ({span}): "
                f"{num['by_drop']:,} handshake ACKs dropped (SYN-ACK sent again after the "
                f"ACK), {num['by_rst']:,} answered with a RST: the application is not calling "
                "accept() fast enough, or its backlog is too small")
    if d.name == "refused_burst":
        bursts = num.get("bursts", [])
        where = (f"{len(bursts)} burst{'s' if len(bursts) != 1 else ''}, from "
                 f"{when(bursts[0]['from'])} to {when(bursts[-1]['to'])}" if bursts else span)
        why = ("the service was down or not listening in between: it accepted before and "
               "after" if num.get("accepted_before_and_after") else
               "it accepted no connection in the capture: nothing listens there"
               if not num.get("ever_accepted") else "the service was down or not listening")
        return f"{service}: {n} refused ({where}): {why}"
    if d.name == "zero_window_stall":
        return (f"{service}: the {side} stopped reading on {n}, advertising a zero window for "
                f"up to {seconds(num['longest'])} ({span}); {num.get('recovered', 0):,} "
                "recovered")
    if d.name == "time_wait_pressure":
        ports = num.get("ports_seen")
        of = (f"ports {ports[0]}-{ports[1]} seen" if ports else
              f"the default {DEFAULT_PORTS:,} ephemeral ports")
        share = f", {num['share_of_ports']:.0%} of {of}" if side == "client" else ""
        return (f"{service}: {num['host']} ({side}) closed first at up to "
                f"{count(num['peak_rate_per_s'], 'connection')} a second, holding up to "
                f"{num['time_wait_peak']:,} in TIME_WAIT{share}"
                + (f"; {count(num['reused_in_time_wait'], '4-tuple')} reused while in "
                   "TIME_WAIT" if num["reused_in_time_wait"] else ""))
    return None

