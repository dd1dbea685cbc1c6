"""The diagnoses of the connection lifecycle (docs/diagnoses.md, part 2): slow connects,
full accept queues, handshakes given up, refused bursts, stalled receivers, TIME_WAIT
pressure: the evidence of the connections their rules picked (derive/rules.py), and the
counts of every connection's facts (derive/diagnoses.py owns the framework: the catalogue,
Diagnosis, and the Diagnoser that calls `one` and `count`).
"""

from collections.abc import Callable
from functools import partial
from itertools import accumulate
from typing import Any

import numpy as np

from pcapstate.derive import rules
from pcapstate.derive.records import ROLES, _host
from pcapstate.derive.rules import groups, service_keys
from pcapstate.words import count, seconds, when

#: Refused connections of a service more than this apart are two bursts.
BURST_GAP = 10.0
#: The rules a flood makes pick connections by the thousand, taken a batch at a time, by
#: service (Lifecycle.bulk): each one's bit, the endpoint it concerns, the method that adds
#: a service's connections
_BULK = ((rules.GAVE_UP, 0, "_gave_up"), (rules.GAVE_UP << 1, 1, "_gave_up"),
         (rules.REFUSED, 1, "_refused"))
BULK = sum(bit for bit, _, _ in _BULK)
#: Linux's default ephemeral port range (net.ipv4.ip_local_port_range 32768-60999).
DEFAULT_PORTS = 28_232


class Lifecycle:
    """The part-2 rules, adding to `diagnoser`'s diagnoses (derive/diagnoses.py)."""

    def __init__(self, diagnoser: Any) -> None:
        self.diagnoser = diagnoser
        self.get, self.example = diagnoser.get, diagnoser.example
        self.service = diagnoser.service
        self.refused: dict[str, list[list[float]]] = {}  # service -> [[first, last, n]]
        self.accepted: dict[str, list[float]] = {}  # service -> [first, last] accepted
        self.options_kept: set[str] = set()  # services whose SYN-ACKs kept the options
        # (client host, service) -> {second: endpoints entering TIME_WAIT}, ports, reuses
        self.tw: dict[tuple[str, str, int], dict[str, Any]] = {}

    def bulk(self, rows: np.ndarray, picks: np.ndarray) -> dict[int, list[Callable[[], None]]]:
        """The rules of BULK (handshakes given up, refused connects: a flood's SYNs),
        a batch at a time: their connections grouped by service (and side), each group
        added in one go. Returns what adds each group, by the row that first shows it:
        where a connection at a time would have begun its diagnosis, in the order of the
        others'."""
        begins: dict[int, list[Callable[[], None]]] = {}
        keys = None
        for bit, e, method in _BULK:
            picked = np.flatnonzero(picks & bit)
            if not len(picked):
                continue
            keys = service_keys(rows) if keys is None else keys
            first, members = groups(keys, picked)
            for i, mine in zip(first, members, strict=True):
                begins.setdefault(int(picked[i]), []).append(
                    partial(getattr(self, method), rows, picked[mine], e))
        return begins

    def one(self, row: np.void, picks: int, end: float) -> None:
        """The evidence of a connection (retired at `end`) the part-2 rules picked (their
        bits, derive/rules.py, in `picks`), but those of BULK."""
        if picks & rules.SLOW_CONNECT:
            self._slow_connect(row)
        if picks & rules.OVERFLOW:
            self._overflow(row, "rst" if picks & rules.OVERFLOW_RST else "drop")
        if picks & rules.SYN_COOKIE:
            self._overflow(row, "syn_cookie")
        for e in range(2):
            if picks & rules.STALL << e:
                self._stall(row, e, end)

    def count(self, facts: np.ndarray, keys: np.ndarray) -> None:
        """Count every connection's facts (rules.FACTS; `keys`: their service_keys): the
        first and last accepted of each service, and TIME_WAIT."""
        picked = np.flatnonzero(facts["accepted"])
        first, members = groups(keys, picked)
        starts = facts["first_ts"][picked]
        for i, mine in zip(first, members, strict=True):
            span = self.accepted.setdefault(self.service(facts[picked[i]]), [np.inf, 0.0])
            span[0] = min(span[0], float(starts[mine].min()))
            span[1] = max(span[1], float(starts[mine].max()))
        picked = np.flatnonzero(facts["options_kept"])
        self.options_kept.update(self.service(facts[picked[i]]) for i in groups(keys, picked)[0])
        self._time_wait(facts, keys)

    def _gave_up(self, rows: np.ndarray, mine: np.ndarray, e: int) -> None:
        """Endpoint e of the connections `mine` (of one service) gave up its SYN (SYN-ACK)."""
        first = rows["tr_ts"][mine, e, 0]
        at = rows["tr_ts"][mine, e, rows["ntr"][mine, e] - 1]  # CLOSED by its timer
        what = "SYN" if e == 0 else "SYN-ACK"

        def example(j: int) -> dict[str, Any]:
            row = rows[j]
            first, tries = float(row["tr_ts"][e, 0]), int(row["syns"][e])
            return self.example(row, [
                (first, f"the {ROLES[e]}'s first {what}"),
                (float(row["syn_ts"][e]), f"its last, the {tries}th"),
                (float(row["tr_ts"][e, int(row["ntr"][e]) - 1]),
                 f"the {ROLES[e]} gives up: its next retry was due")])

        d = self.get("handshake_timeout", rows[mine[0]], e, "the backoff of the "
                     "retransmissions: the next was due and never came")
        d.add_many(len(mine), float(first.min()), float(at.max()),
                   (partial(example, j) for j in mine))
        d.numbers["sent_max"] = max(d.numbers.get("sent_max", 0),
                                    int(rows["syns"][mine, e].max()))
        d.numbers["gave_up_after_max"] = max(d.numbers.get("gave_up_after_max", 0.0),
                                             float((at - first).max()))

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

    def _overflow(self, row: np.void, how: str) -> None:
        """A full accept queue's handshake ACK dropped or reset (`how`: drop, rst), or a
        full request queue's SYN cookie (syn_cookie)."""
        inferred = None
        if how == "syn_cookie":
            inferred = ("SYN-ACKs without the window scaling and SACK the client offered (with "
                        "no timestamps): how Linux answers with a SYN cookie")
            first = float(row["tr_ts"][0, 0])
            packets = [(first, "the client's SYN, offering window scaling or SACK, without "
                               "timestamps"),
                       (float(row["syn_ts"][1]), "the listener's SYN-ACK, with neither: a "
                        "SYN cookie" + (f" (the last of {int(row['syns'][1])} sent)"
                                        if row["syns"][1] > 1 else ""))]
        else:
            ack = float(row["tr_ts"][1, min(1, int(row["ntr"][1]) - 1)])
            packets = [(float(row["syn_ts"][1]), "the listener's SYN-ACK"),
                       (ack, "the client's ACK completing the handshake")]
        if how == "rst":
            packets.append((float(row["last_ts"]), "RST from the listener: "
                            "tcp_abort_on_overflow=1"))
        elif how == "drop":
            packets.append((float(row["syn_ts"][1]), f"the SYN-ACK sent again "
                            f"{int(row['synack_after_ack'])} times after that ACK: dropped"))
        d = self.get("accept_queue_overflow", row, 1, inferred)
        d.add(min(p[0] for p in packets), max(p[0] for p in packets),
              lambda: self.example(row, packets))
        for key in ("by_drop", "by_rst", "by_syn_cookie"):
            d.numbers[key] = d.numbers.get(key, 0) + (key == f"by_{how}")

    def _refused(self, rows: np.ndarray, mine: np.ndarray, e: int) -> None:
        """The connections `mine` (of one service) were refused: their SYNs answered by a
        RST (`e`: the server, who refused)."""
        starts = rows["first_ts"][mine]
        service = self.service(rows[mine[0]])
        bursts = self.refused.setdefault(service, [])
        for t in starts.tolist():
            if bursts and t - bursts[-1][1] <= BURST_GAP:
                bursts[-1][1] = max(bursts[-1][1], t)
                bursts[-1][2] += 1
            else:
                bursts.append([t, t, 1])

        def example(j: int) -> dict[str, Any]:
            row = rows[j]
            return self.example(row, [(float(row["first_ts"]), "the client's SYN"),
                                      (float(row["last_ts"]), "RST: nothing listening")])

        d = self.diagnoser.named("refused_burst", service, ROLES[e])
        d.add_many(len(mine), float(starts.min()), float(rows["last_ts"][mine].max()),
                   (partial(example, j) for j in mine))

    def _stall(self, row: np.void, e: int, end: float) -> None:
        since = float(row["zw_since"][e])
        longest = rules.stall_longest(row, e, end)
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

    def _time_wait(self, facts: np.ndarray, keys: np.ndarray) -> None:
        """The endpoints that were in TIME_WAIT, from when they entered it until they left
        (their timer, a new connection on the 4-tuple, or the capture's end), per host,
        service and side: second by second."""
        picked, side = np.nonzero(~np.isnan(facts["tw_at"]))
        if not len(picked):
            return
        at, left = facts["tw_at"][picked, side], facts["tw_left"][picked, side]
        first, members = groups(keys, picked, facts, side)
        ports = facts["port"][picked, side]
        for i, mine in zip(first, members, strict=True):
            e, row = int(side[i]), facts[picked[i]]
            key = (_host(int(row["v6"]), int(row["ip_hi"][e]), int(row["ip_lo"][e])),
                   self.service(row), e)
            tw = self.tw.setdefault(key, {"entered": {}, "change": {}, "ports": [65536, -1],
                                          "reused": 0, "n": 0, "reused_examples": [],
                                          "other_examples": []})
            # examples: the first 5 whose 4-tuple was reused while in TIME_WAIT, then the
            # first others (kept apart: the same whatever batches the facts came in)
            reused = facts["tw_reused"][picked[mine]] != 0
            for kind, chosen in (("reused_examples", mine[reused]),
                                 ("other_examples", mine[~reused])):
                for j in chosen[:5 - len(tw[kind])]:
                    row = facts[picked[j]]
                    tw[kind].append(self.example(row, [
                        (float(row["fin_ts"][e]), f"the {ROLES[e]}'s FIN, the first"),
                        (float(at[j]), f"the {ROLES[e]} in TIME_WAIT"),
                        (float(left[j]), "a new connection on the 4-tuple while in "
                         "TIME_WAIT" if row["tw_reused"] else "TIME_WAIT over, or the capture's "
                         "end")]))
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
            tw["reused"] += int(facts["tw_reused"][picked[mine]].sum())
            tw["n"] += len(mine)

    def finish(self) -> None:
        """What needs every connection first: bursts' accepted neighbours, TIME_WAIT peaks."""
        for (name, service, *_), d in self.diagnoser.found.items():
            if name == "accept_queue_overflow" and d.numbers["by_syn_cookie"]:
                d.numbers["options_kept_otherwise"] = service in self.options_kept
            if name == "refused_burst":
                accepted = self.accepted.get(service)
                bursts = self.refused.get(service, [])
                d.numbers |= {
                    "bursts": [{"from": a, "to": b, "count": n} for a, b, n in bursts[:20]],
                    "accepted_before_and_after": bool(
                        accepted and accepted[0] < bursts[0][0] and accepted[1] > bursts[-1][1]),
                    "ever_accepted": accepted is not None}
        for (host, service, e), tw in self.tw.items():
            # endpoints in TIME_WAIT, second by second
            peak = max(accumulate((tw["change"][t] for t in sorted(tw["change"])), initial=0))
            times = sorted(tw["entered"])
            span = tw["ports"][1] - tw["ports"][0] + 1 if e == 0 else DEFAULT_PORTS
            rate = max(tw["entered"].values())
            if not (peak >= DEFAULT_PORTS // 2 or tw["reused"]
                    or (e == 0 and span >= 100 and peak >= 0.9 * span)):
                continue
            d = self.diagnoser.named("time_wait_pressure", service, ROLES[e], host=host)
            d.count, d.first, d.last = tw["n"], float(times[0]), float(times[-1]) + 1
            d.examples = (tw["reused_examples"] + tw["other_examples"])[:5]
            d.numbers |= {"host": host, "time_wait_peak": peak, "peak_rate_per_s": rate,
                          "ports_seen": tw["ports"] if e == 0 else None,
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
    if d.name == "accept_queue_overflow" and num["by_syn_cookie"]:
        otherwise = ("it kept them for other clients without timestamps: its request queue "
                     "was full (a SYN flood, or more handshakes at once than its listen() "
                     "backlog), or net.ipv4.tcp_syncookies=2" if num.get("options_kept_otherwise")
                     else "it kept them for no client seen: SYN cookies, or a listener with "
                     "window scaling and SACK turned off")
        return (f"{service}: the listener answered {n} with what look like SYN cookies "
                f"({span}): SYN-ACKs without the window scaling and SACK the client offered; "
                f"{otherwise}")
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

