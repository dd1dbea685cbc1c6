"""The compiled engine (scan.py + fasttable.py) against the reference engine (decode.py,
table.py, machine.py): the same result and the same connection records on every sample and
on random segment sequences."""

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcapstate.decode import Segment
from pcapstate.fasttable import FastTracker
from pcapstate.pipeline import analyze
from pcapstate.scan import NO_WSCALE, NOT_SYN, TCP, Batch
from pcapstate.settings import Settings
from pcapstate.summary import Summary
from pcapstate.table import Tracker
from tests.test_properties import FLAG_SETS
from tests.test_samples import EXPECTED, captures

FLAGS = {"S": 0x02, "A": 0x10, "F": 0x01, "R": 0x04, "P": 0x08}


def both(files: list[str]) -> tuple:
    out = []
    for engine in ("plain", "fast"):
        records: list[dict] = []
        result = analyze(files, on_record=records.append, engine=engine)
        result.pop("elapsed_seconds")
        assert result.pop("decoder")["engine"] == engine
        no_records = analyze(files, engine=engine)
        no_records.pop("elapsed_seconds")
        no_records.pop("decoder")
        out.append((result, records, no_records))
    return tuple(out)


def test_every_sample_gives_the_same_result_on_both_engines():
    assert EXPECTED
    for expected in EXPECTED:
        plain, fast = both(captures(expected))
        assert json.dumps(plain, sort_keys=True) == json.dumps(fast, sort_keys=True), expected


def test_briefs_are_the_records_in_brief_on_both_engines():
    """The corpus check's bulk path (on_brief) says what the full records say."""
    for expected in EXPECTED:
        for engine in ("plain", "fast"):
            records: list[dict] = []
            briefs: list[list] = []
            analyze(captures(expected), on_record=records.append, on_brief=briefs.extend,
                    engine=engine)
            assert briefs == [[r["client"], r["server"], r["first_ts"], r["end"], r["closer"],
                               r["endpoints"]["client"]["final_state"],
                               r["endpoints"]["server"]["final_state"]] for r in records]
            assert len(briefs) == len(records) > 0, expected


def run_plain(rows, s: Settings):
    records: list[dict] = []
    summary = Summary(s, records.append)
    summary.timeline.start(rows[0][0] if rows else 0.0)
    tracker = Tracker(s, summary.add)
    for ts, src, dst, sport, dport, seq, ack, flags, plen, *cut in rows:
        tracker.segment(ts, Segment(src, dst, sport, dport, seq, ack, flags, 65535, plen, 0,
                                    b"", 0, bool(cut and cut[0])))
    end = rows[-1][0] + 100 if rows else 0.0
    tracker.finish(end)
    return summary.to_json(tracker.evicted), summary.timeline.to_json(end), records


def run_fast(rows, s: Settings):
    records: list[dict] = []
    summary = Summary(s, records.append)
    summary.timeline.start(rows[0][0] if rows else 0.0)
    tracker = FastTracker(s, summary, slots=2)  # tiny: growth is exercised too
    tracker.feed(batch_of(rows))
    end = rows[-1][0] + 100 if rows else 0.0
    tracker.finish(end)
    return summary.to_json(tracker.evicted), summary.timeline.to_json(end), records


def batch_of(rows) -> Batch:
    """A batch of TCP segments given as (ts, src, dst, sport, dport, seq, ack, flags,
    payload length[, payload cut]), IPv4."""
    b = Batch.empty(len(rows))
    for i, (ts, src, dst, sport, dport, seq, ack, flags, plen, *cut) in enumerate(rows):
        b.ts[i], b.kind[i], b.v6[i] = ts, TCP, False
        b.src_hi[i], b.src_lo[i] = 0, int.from_bytes(src, "big")
        b.dst_hi[i], b.dst_lo[i] = 0, int.from_bytes(dst, "big")
        b.sport[i], b.dport[i], b.seq[i], b.ack[i], b.flags[i] = sport, dport, seq, ack, flags
        b.win[i], b.plen[i], b.ipid[i] = 65535, plen, 0
        b.wscale[i] = NO_WSCALE if flags & 0x02 else NOT_SYN
        b.cut[i] = bool(cut and cut[0])
    return b


HOSTS = [(bytes([10, 0, 0, 1]), 40000), (bytes([10, 0, 0, 1]), 40001), (bytes([10, 0, 0, 2]), 80)]
rows_strategy = st.lists(
    st.tuples(st.one_of(st.floats(0, 40), st.sampled_from([4.9, 5.0, 300.0, 400.0])),
              st.sampled_from([0, 1]), st.booleans(),
              st.sampled_from(FLAG_SETS), st.integers(-2, 2), st.integers(-2, 2),
              st.sampled_from([0, 0, 1, 50]), st.booleans(), st.booleans()),
    max_size=60)


@settings(max_examples=300, deadline=None)
@given(rows_strategy, st.integers(0, 2**32 - 1), st.sampled_from([0, 0, 1]))
def test_random_segment_sequences_give_the_same_result(steps, isn, limit):
    """Two connections sharing a server, random flags, sequence numbers near what was
    sent, time jumps past the timers (pcapstate's and Zeek's, sometimes backwards); a
    table of one connection at a time, a third of the time (evictions)."""
    sent: dict[tuple, int] = {}
    rows, ts = [], 0.0
    for step, client, forward, flags, dseq, dack, plen, back, cut in steps:
        ts = max(0.0, ts - step / 100) if back else ts + step
        a, b = (HOSTS[client], HOSTS[2]) if forward else (HOSTS[2], HOSTS[client])
        seq = sent.get((a, b), isn) + dseq
        ack = sent.get((b, a), isn + 7) + dack
        f = sum(FLAGS[c] for c in flags)
        rows.append((ts, a[0], b[0], a[1], b[1], seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, f, plen,
                     cut))
        sent[(a, b)] = seq + plen + ("S" in flags) + ("F" in flags)
    s = Settings(time_wait=30.0, fin_timeout=20.0, linger=2.0, max_connections=limit)
    plain, fast = run_plain(rows, s), run_fast(rows, s)
    assert plain == fast


def test_slots_grow_and_are_reused():
    """More connections than the initial slots, most retired while reading."""
    s = Settings(time_wait=1.0, linger=0.5)
    rows = []
    for i in range(300):
        ts, port, c, srv = i * 0.5, 20000 + i % 50, 1000 * i, 7_000_000 + i
        cl, sv = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
        rows += [(ts, cl, sv, port, 80, c, 0, 0x02, 0),
                 (ts + 0.01, sv, cl, 80, port, srv, c + 1, 0x12, 0),
                 (ts + 0.02, cl, sv, port, 80, c + 1, srv + 1, 0x11, 0),
                 (ts + 0.03, sv, cl, 80, port, srv + 1, c + 2, 0x11, 0),
                 (ts + 0.04, cl, sv, port, 80, c + 2, srv + 2, 0x10, 0)]
    plain, fast = run_plain(rows, s), run_fast(rows, s)
    assert plain == fast
    assert plain[0]["connections"]["total"] == 300
    assert np.all([r["end"] == "closed" for r in fast[2]])


def test_samples_dir_is_what_the_engines_saw():
    assert all(Path(f).exists() for e in EXPECTED for f in captures(e))


def test_read_ahead_keeps_order_and_buffers_valid(tmp_path):
    """Batches decoded in the reader thread arrive in order, and each one is intact while
    the caller works on it (the reader writes into rotating buffers)."""
    from pcapstate.capture import open_captures
    from pcapstate.pipeline import read_ahead

    path = tmp_path / "many.pcap"
    path.write_bytes(b"".join(Path(p).read_bytes() if i == 0 else Path(p).read_bytes()[24:]
                              for i, p in enumerate(["samples/client_close.pcap"] * 50)))
    cap = open_captures([str(path)])[0]
    direct = [b.ts.copy() for b in cap.batches(rows=7)]
    cap = open_captures([str(path)])[0]
    seen = []
    for b in read_ahead(cap.batches(rows=7)):
        first = b.ts.copy()
        time.sleep(0.001)  # the reader runs ahead meanwhile
        assert np.array_equal(first, b.ts)
        seen.append(first)
    assert len(seen) == len(direct) > 20
    assert all(np.array_equal(a, b) for a, b in zip(seen, direct, strict=True))


def test_read_ahead_passes_errors_on_and_stops_when_left():
    from pcapstate.pipeline import read_ahead

    def failing():
        yield Batch.empty(1)
        raise ValueError("broken")

    it = read_ahead(failing())
    next(it)
    with pytest.raises(ValueError, match="broken"):
        next(it)

    endless = read_ahead(Batch.empty(1) for _ in iter(int, 1))
    next(endless)
    endless.close()  # must not hang on the reader thread
    assert not [t for t in threading.enumerate() if t.name == "pcapstate-decode"]


def test_a_socket_connected_to_itself():
    """Both directions of a self-connection are one 4-tuple (the compiled table keeps one
    key for both directions): the engines still agree."""
    me = bytes([127, 0, 0, 1])
    rows = [(0.0, me, me, 5000, 5000, 100, 0, 0x02, 0),
            (0.001, me, me, 5000, 5000, 100, 101, 0x12, 0),
            (0.002, me, me, 5000, 5000, 101, 101, 0x10, 5),
            (0.003, me, me, 5000, 5000, 106, 101, 0x11, 0),
            (0.004, me, me, 5000, 5000, 107, 107, 0x10, 0)]
    s = Settings()
    plain, fast = run_plain(rows, s), run_fast(rows, s)
    assert plain == fast
    assert fast[0]["connections"]["total"] == 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 12), st.sampled_from([0, 5, 10, 30]),
                          st.booleans(), st.sampled_from([0, 0, 0, 0x01])), max_size=40))
def test_random_holes_and_acks_give_the_same_zeek_view(steps):
    """Zeek's reassembler on both engines: data at random offsets (holes, overlaps, more
    out-of-order blocks than are kept), some cut by the snaplen, ACKs anywhere, FINs
    from both sides (closes deferred while data is pending)."""
    cl, sv = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    rows = [(0.0, cl, sv, 40000, 80, 100, 0, 0x02, 0), (0.1, sv, cl, 80, 40000, 900, 101, 0x12, 0),
            (0.2, cl, sv, 40000, 80, 101, 901, 0x10, 0)]
    for k, (data, offset, length, cut, fin) in enumerate(steps):
        ts = 0.3 + k / 100
        if data:
            rows.append((ts, cl, sv, 40000, 80, 101 + 10 * offset, 901, 0x18 | fin, length,
                         cut))
        else:
            rows.append((ts, sv, cl, 80, 40000, 901, 101 + 10 * offset, 0x10 | fin, 0))
    plain, fast = run_plain(rows, Settings()), run_fast(rows, Settings())
    assert plain == fast
