"""Transcripts: crafted segments in, connection records out, through the one engine (the
tracker of track/ and the summary of derive/), the same code a capture goes through."""

import json
from typing import Any

from pcapstate.decode.frames import NO_WSCALE, NOT_SYN, TCP, Batch
from pcapstate.derive.summary import Summary
from pcapstate.settings import Settings
from pcapstate.track.connections import Tracker
from pcapstate.vocab import ACK, FIN, PSH, RST, SYN
from pcapstate.words import split_address

C = (bytes([10, 0, 0, 1]), 40000)
S = (bytes([10, 0, 0, 2]), 80)
FLAGS = {"S": SYN, "A": ACK, "F": FIN, "R": RST, "P": PSH}


def batch_of(rows: list[tuple]) -> Batch:
    """A batch of TCP segments given as (ts, src, dst, sport, dport, seq, ack, flags,
    payload length[, payload cut]): addresses of 4 (IPv4) or 16 bytes (IPv6)."""
    b = Batch.empty(len(rows))
    for i, (ts, src, dst, sport, dport, seq, ack, flags, plen, *cut) in enumerate(rows):
        put(b, i, ts, src, dst, sport, dport, seq, ack, flags, plen, cut=bool(cut and cut[0]))
    return b


def put(b: Batch, i: int, ts: float, src: bytes, dst: bytes, sport: int, dport: int, seq: int,
        ack: int, flags: int, plen: int = 0, win: int = 65535, ipid: int = 0,
        wscale: int | None = None, cut: bool = False, bad_sum: bool = False,
        iplen: int = 0, synopt: int = 0) -> None:
    """Row i of `b`: one segment. `wscale`: the window scale a SYN offers (None: none);
    `synopt`: its other options (vocab.SYN_SACK, SYN_TS)."""
    b.ts[i], b.kind[i], b.v6[i] = ts, TCP, len(src) == 16
    for (hi, lo), ip in (((b.src_hi, b.src_lo), src), ((b.dst_hi, b.dst_lo), dst)):
        n = int.from_bytes(ip, "big")
        hi[i], lo[i] = n >> 64, n & (2**64 - 1)
    b.sport[i], b.dport[i] = sport, dport
    b.seq[i], b.ack[i], b.flags[i] = seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, flags
    b.win[i], b.plen[i], b.ipid[i] = win, plen, ipid
    b.wscale[i] = (NO_WSCALE if wscale is None else wscale) if flags & SYN else NOT_SYN
    b.synopt[i] = synopt if flags & SYN else 0
    b.analysis[i], b.iplen[i], b.cut[i], b.bad_sum[i] = 0, iplen, cut, bad_sum


class Transcript:
    """Feeds segments to a Tracker as they are sent; keeps every retired connection's
    record (docs/json.md), in the order they retired."""

    def __init__(self, slots: int = 0, **settings: Any) -> None:
        self.settings = Settings(**{"zeek": True, **settings})
        self.records: list[dict[str, Any]] = []
        self.briefs: list[list[Any]] = []
        self.zeek: list[dict[str, Any]] = []
        self.summary = Summary(self.settings, self.records.append, self.briefs.extend,
                               lambda entries: self.zeek.extend(entry_dicts(entries)))
        self.tracker = Tracker(self.settings, self.summary.take, slots=slots)
        self.ipid = 0

    def send(self, ts: float, direction: str, flags: str, seq: int, ack: int = 0,
             plen: int = 0, win: int = 65535, src: tuple[bytes, int] = C,
             dst: tuple[bytes, int] = S, **more: Any) -> "Transcript":
        """One segment: ">" from `src` to `dst`, "<" the other way; `flags` as letters
        (S A F R P); `more`: put's ipid, wscale, synopt, cut, bad_sum, iplen."""
        a, b = (src, dst) if direction == ">" else (dst, src)
        self.ipid += 1
        more.setdefault("ipid", self.ipid)
        batch = Batch.empty(1)
        put(batch, 0, ts, a[0], b[0], a[1], b[1], seq, ack, sum(FLAGS[c] for c in flags), plen,
            win, **more)
        self.summary.timeline.start(ts)
        self.tracker.feed(batch)
        return self

    def finish(self, end: float) -> list[dict[str, Any]]:
        """The capture ends at `end`: every connection's record."""
        self.tracker.finish(end)
        self.end = end
        return self.records

    def result(self) -> dict[str, Any]:
        """The summary's part of the result (after `finish`)."""
        return self.summary.to_json(self.tracker.evicted) | {
            "timeline": self.summary.timeline.to_json(self.end)}


def entry_dicts(entries: dict[str, Any]) -> list[dict[str, Any]]:
    """What `on_zeek` receives (derive/records.py conn_entries, a column each) as a dict
    each: its row's client, server and tunnel, its originator's and responder's host and
    port, and its Zeek view's fields as a record's `zeek` has them."""
    columns = {k: v.tolist() for k, v in entries.items()}
    out = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(),
                                                                     strict=True)]
    for e in out:
        if not e.pop("timed"):
            e.update(duration=None, orig_bytes=None, resp_bytes=None)
    return out


def record_entries(record: dict[str, Any]) -> list[dict[str, Any]]:
    """What `on_zeek` should say of a record (entry_dicts): an entry for its `zeek` and
    each of its `zeek_later`."""
    out = []
    for z in (record["zeek"], *record.get("zeek_later", ())):
        orig, resp = (("client", "server") if z["orig"] == "client"
                      else ("server", "client"))
        (oh, op), (rh, rp) = (split_address(record[orig]), split_address(record[resp]))
        tunnel = record.get("tunnel")
        out.append({**z, "client": record["client"], "server": record["server"],
                    "orig_h": oh, "orig_p": op, "resp_h": rh, "resp_p": rp,
                    "tunnel": tunnel and json.dumps(tunnel, sort_keys=True)})
    return out


def transitions(record: dict[str, Any], role: str) -> list[tuple[float, str, bool]]:
    """An endpoint's transitions in a record: (time, state entered, by a timer)."""
    return [(t["ts"], t["state"], t.get("timer", False))
            for t in record["endpoints"][role]["transitions"]]


def states(record: dict[str, Any], role: str) -> list[str]:
    """The states an endpoint went through, in order."""
    return [t["state"] for t in record["endpoints"][role]["transitions"]]


def final(record: dict[str, Any], role: str) -> str:
    return record["endpoints"][role]["final_state"]


def handshake(t: Transcript, ts: float = 0.0, cisn: int = 1000, sisn: int = 5000,
              **more: Any) -> None:
    t.send(ts, ">", "S", cisn, **more)
    t.send(ts + 0.001, "<", "SA", sisn, cisn + 1, **more)
    t.send(ts + 0.002, ">", "A", cisn + 1, sisn + 1, **more)
