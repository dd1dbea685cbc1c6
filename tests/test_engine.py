"""The engine (track/ and derive/) against oracles that share no code with it: the summary's
aggregates recomputed here, in plain Python, from the connection records, on random segment
sequences; expected values worked out from the scenario; Zeek's published vocabulary; every
sample's briefs against its records. And the reader thread that feeds the engine."""

import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pcapstate.decode.frames import Batch
from pcapstate.pipeline import analyze
from pcapstate.vocab import Closer, EndKind, State
from tests.test_properties import FLAG_SETS
from tests.test_samples import EXPECTED, captures
from tests.transcript import FLAGS, Transcript, batch_of, record_entries, transitions

ROLES = ("client", "server")
#: main.zeek's conn_state values and Zeek's history letters (upper case the originator's,
#: lower case the responder's; ^ the flip), as Zeek documents them.
ZEEK_CONN_STATES = {"S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH",
                    "SH", "SHR", "OTH"}
ZEEK_LETTERS = set("SsHhAaDdFfRrTtGgWwCcIiQq^")


def ranked(counts: Counter) -> list[tuple[str, int]]:
    """Largest first, ties by name, zeros left out (docs/json.md's counts)."""
    return sorted(((str(k), v) for k, v in counts.items() if v), key=lambda kv: (-kv[1], kv[0]))


def brief(r: dict[str, Any]) -> list[Any]:
    return [r["client"], r["server"], r["first_ts"], r["end"], r["closer"],
            r["endpoints"]["client"]["final_state"], r["endpoints"]["server"]["final_state"]]


def views(r: dict[str, Any]) -> list[dict[str, Any]]:
    return [r["zeek"], *r.get("zeek_later", [])]


def durations(records: list[dict[str, Any]], retired_at: dict[int, float]) -> dict[str, dict]:
    """docs/json.md's `durations`, but the histogram and percentiles: each stretch an
    endpoint spent in a state other than CLOSED, from its transition to the next, the last
    one to the connection's retirement (`retired_at`, by id). Begun before the capture: the
    first stretch of the client of a connection caught mid-stream, and of the server of one
    whose roles came from the ports."""
    out: dict[str, dict] = defaultdict(lambda: {
        "count": 0, "complete": 0, "right_censored": 0, "left_censored": 0,
        "both_censored": 0, "max": None, "max_censored": None})
    for r in records:
        for role in ROLES:
            trs = transitions(r, role)
            began_before = r["mid_stream"] if role == "client" else r["roles_from"] == "port"
            for k, (ts, state, _) in enumerate(trs):
                if state == State.CLOSED:
                    continue
                whole = k + 1 < len(trs)
                left = k == 0 and began_before
                d = max((trs[k + 1][0] if whole else retired_at[r["id"]]) - ts, 0.0)
                s = out[state]
                s["count"] += 1
                s[{(True, False): "complete", (True, True): "left_censored",
                   (False, False): "right_censored", (False, True): "both_censored"}[
                    whole, left]] += 1
                key = "max" if whole and not left else "max_censored"
                s[key] = d if s[key] is None else max(s[key], d)
    return dict(out)


def state_at(r: dict[str, Any], role: str, ts: float) -> State:
    """An endpoint's state after the segments up to `ts` and the timers that ran out by
    then (CLOSED before its first transition): at its last segment, what vocab.Tier says a
    full table weighs."""
    state = State.CLOSED
    for at, entered, timer in transitions(r, role):
        if not timer or at <= ts:
            state = entered
    return state


def tier(client: State, server: State) -> str:
    """docs/json.md's eviction tiers, by the endpoints' states."""
    if {client, server} <= {State.CLOSED, State.TIME_WAIT}:
        return "finished"
    if {client, server} <= {State.CLOSED, State.SYN_SENT, State.SYN_RCVD}:
        return "attempt"
    return "open"


def check_against_records(t: Transcript, end: float, limit: int, segments: int) -> None:
    """What the summary, the briefs and Zeek's view say, against the records."""
    records = t.records
    n = len(records)
    assert t.tracker.live == 0
    assert sorted(r["id"] for r in records) == list(range(1, n + 1)) and t.tracker.connections == n
    by_id = {r["id"]: r for r in records}
    # when each connection's last stretch ended: in a table of one, an evicted connection
    # was retired when the next one opened, at its first segment; any other at the capture
    # end or, while reading, once both its endpoints were CLOSED (nothing still running)
    retired_at = {}
    for r in records:
        if r["evicted"]:
            assert limit == 1 and r["id"] < n
            retired_at[r["id"]] = by_id[r["id"] + 1]["first_ts"]
        else:
            retired_at[r["id"]] = end
    for r in records:
        assert r["end"] in set(EndKind) and r["closer"] in set(Closer)
        for role in ROLES:
            trs = transitions(r, role)
            assert [ts for ts, _, _ in trs] == sorted(ts for ts, _, _ in trs), (r, role)
            for ts, state, timer in trs:
                assert state in set(State)
                assert r["first_ts"] <= ts <= max(retired_at[r["id"]], r["last_ts"])
                # a segment's doing, but the close of a connection whose 4-tuple a new SYN
                # took over (at that SYN)
                assert timer or state == State.CLOSED or ts <= r["last_ts"]
            assert r["endpoints"][role]["final_state"] == (trs[-1][1] if trs else State.CLOSED)
            if not r["evicted"]:
                # past every timer (time_wait 30 s, fin_timeout 20 s) by the end
                assert r["endpoints"][role]["final_state"] != State.TIME_WAIT
        for z in views(r):
            assert z["conn_state"] in ZEEK_CONN_STATES and set(z["history"]) <= ZEEK_LETTERS
            assert z["missed_bytes"] >= 0
    # every segment is one endpoint's packet (but a duplicate) and one Zeek view's
    anomalies: Counter = Counter()
    for r in records:
        anomalies.update(r["anomalies"])
    assert sum(r["endpoints"][e]["packets"] for r in records for e in ROLES) \
        + anomalies["duplicate_segment"] == segments
    assert sum(z["orig_pkts"] + z["resp_pkts"] for r in records for z in views(r)) == segments

    result = t.result()
    conns = result["connections"]
    assert conns["total"] == n
    assert list(conns["by_end"].items()) == ranked(Counter(r["end"] for r in records))
    assert list(conns["by_closer"].items()) == ranked(Counter(r["closer"] for r in records))
    crossed: dict[str, Counter] = defaultdict(Counter)
    for r in records:
        crossed[r["end"]][r["closer"]] += 1
    assert conns["by_end_and_closer"] == {k: dict(v) for k, v in crossed.items()}
    assert list(conns["roles_from"].items()) == ranked(Counter(r["roles_from"] for r in records))
    assert conns["mid_stream"] == sum(r["mid_stream"] for r in records)
    for role in ROLES:
        assert list(conns["final_states"][role].items()) == ranked(
            Counter(r["endpoints"][role]["final_state"] for r in records))
    assert conns["anomalies"] == dict(sorted((k, v) for k, v in anomalies.items() if v))
    assert list(conns["zeek_conn_states"].items()) == ranked(
        Counter(z["conn_state"] for r in records for z in views(r)))
    evicted = Counter(tier(state_at(r, "client", r["last_ts"]),
                           state_at(r, "server", r["last_ts"]))
                      for r in records if r["evicted"])
    assert conns["evicted"] == {"total": sum(evicted.values()), "finished": evicted["finished"],
                                "attempt": evicted["attempt"], "open": evicted["open"]}

    expected = durations(records, retired_at)
    got = result["durations"]
    assert sorted(got) == sorted(expected)
    for state, e in expected.items():
        assert {k: got[state][k] for k in e} == e, state

    assert t.briefs == [brief(r) for r in records]
    assert t.zeek == [e for r in records for e in record_entries(r)]


HOSTS = [(bytes([10, 0, 0, 1]), 40000), (bytes([10, 0, 0, 1]), 40001), (bytes([10, 0, 0, 2]), 80)]
rows_strategy = st.lists(
    st.tuples(st.one_of(st.floats(0, 40), st.sampled_from([4.9, 5.0, 300.0, 400.0])),
              st.sampled_from([0, 1]), st.booleans(),
              st.sampled_from(FLAG_SETS), st.integers(-2, 2), st.integers(-2, 2),
              st.sampled_from([0, 0, 1, 50]), st.booleans(), st.booleans()),
    max_size=60)


@settings(max_examples=250, deadline=None)
@given(rows_strategy, st.integers(0, 2**32 - 1), st.sampled_from([0, 0, 1]))
# the capture's clock past a listener's SYN-ACK timer (1.5 s), then back before it (0.0):
# the SYN-ACK sent again at 0.0 came after the timer had closed the request at 1.0
@example([(0.0, 0, False, "S", 0, 0, 0, False, False),
          (0.0, 0, False, "S", 0, 0, 0, False, False),
          (0.0, 1, False, "S", 0, 0, 0, False, False),
          (1.5, 0, False, "S", 0, 0, 0, False, False),
          (300.0, 0, False, "S", 0, 0, 0, True, False),
          (0.0, 1, False, "SA", 0, 0, 0, False, False)], 0, 0)
def test_random_segment_sequences_add_up(steps, isn, limit):
    """Two connections sharing a server, random flags, sequence numbers near what was
    sent, time jumps past the timers (pcapstate's and Zeek's, sometimes backwards); a
    table of one connection at a time, a third of the time (evictions); two slots to start
    with (growth). The summary says what the records say."""
    sent: dict[tuple, int] = {}
    rows, ts = [], 0.0
    for step, client, forward, flags, dseq, dack, plen, back, cut in steps:
        ts = max(0.0, ts - step / 100) if back else ts + step
        a, b = (HOSTS[client], HOSTS[2]) if forward else (HOSTS[2], HOSTS[client])
        seq = sent.get((a, b), isn) + dseq
        ack = sent.get((b, a), isn + 7) + dack
        rows.append((ts, a[0], b[0], a[1], b[1], seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                     sum(FLAGS[c] for c in flags), plen, cut))
        sent[(a, b)] = seq + plen + ("S" in flags) + ("F" in flags)
    t = Transcript(slots=2, time_wait=30.0, fin_timeout=20.0, linger=2.0,
                   max_connections=limit)
    end = rows[-1][0] + 100 if rows else 0.0
    t.summary.timeline.start(rows[0][0] if rows else 0.0)
    t.tracker.feed(batch_of(rows))
    t.finish(end)
    check_against_records(t, end, limit, len(rows))


def test_slots_grow_and_are_reused():
    """300 connections, one every 0.5 s on 50 client ports, each closed by the client
    (TIME_WAIT 1 s), through a tracker started with two slots: every one closed, in order,
    the client's TIME_WAIT expired by its timer; most retired while reading, in a few
    slots."""
    t = Transcript(slots=2, time_wait=1.0, linger=0.5)
    rows = []
    cl, sv = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    for i in range(300):
        ts, port, c, srv = i * 0.5, 20000 + i % 50, 1000 * i, 7_000_000 + i
        rows += [(ts, cl, sv, port, 80, c, 0, FLAGS["S"], 0),
                 (ts + 0.01, sv, cl, 80, port, srv, c + 1, FLAGS["S"] | FLAGS["A"], 0),
                 (ts + 0.02, cl, sv, port, 80, c + 1, srv + 1, FLAGS["F"] | FLAGS["A"], 0),
                 (ts + 0.03, sv, cl, 80, port, srv + 1, c + 2, FLAGS["F"] | FLAGS["A"], 0),
                 (ts + 0.04, cl, sv, port, 80, c + 2, srv + 2, FLAGS["A"], 0)]
    t.summary.timeline.start(0.0)
    t.tracker.feed(batch_of(rows))
    assert len(t.records) > 290  # retired while reading: TIME_WAIT and linger are short
    assert t.tracker.peak_live <= 6  # one every 0.5 s, each live for 1.03 s + a sweep
    assert 2 < len(t.tracker.T) <= 16  # grew, then reused
    records = t.finish(200.0)
    assert [r["id"] for r in records] == list(range(1, 301))
    for i, r in enumerate(records):
        ts = i * 0.5
        assert r["client"] == f"10.0.0.1:{20000 + i % 50}" and r["server"] == "10.0.0.2:80"
        assert (r["end"], r["closer"], r["reset_by"], r["anomalies"]) == \
            ("closed", "client", None, {})
        # the client's FIN acknowledged with the server's FIN (FIN_WAIT_2 and the receipt of
        # that FIN, at its capture time), then TIME_WAIT's 1 s
        assert transitions(r, "client") == [
            (ts, State.SYN_SENT, False), (ts + 0.01, State.ESTABLISHED, False),
            (ts + 0.02, State.FIN_WAIT_1, False), (ts + 0.03, State.FIN_WAIT_2, False),
            (ts + 0.03, State.TIME_WAIT, False), (ts + 0.03 + 1.0, State.CLOSED, True)]
        assert transitions(r, "server") == [
            (ts, State.SYN_RCVD, False), (ts + 0.02, State.ESTABLISHED, False),
            (ts + 0.02, State.CLOSE_WAIT, False), (ts + 0.03, State.LAST_ACK, False),
            (ts + 0.04, State.CLOSED, False)]
    conns = t.result()["connections"]
    assert (conns["total"], conns["by_end"], conns["by_closer"]) == \
        (300, {"closed": 300}, {"client": 300})
    assert conns["final_states"] == {"client": {"CLOSED": 300}, "server": {"CLOSED": 300}}


def test_a_socket_connected_to_itself():
    """Both directions of a self-connection are one 4-tuple, so one connection; the first
    segment, the SYN, is the client's and every later one is taken as the peer's
    (track/connections.py): the server's SYN/ACK acknowledges the client's SYN, the server
    sends data and a FIN, and nothing it sent is ever acknowledged by the client (whose only
    segment was its SYN): a half close by the server."""
    t = Transcript()
    me = (bytes([127, 0, 0, 1]), 5000)
    for ts, flags, seq, ack, plen in [(0.0, "S", 100, 0, 0), (0.001, "SA", 100, 101, 0),
                                      (0.002, "A", 101, 101, 5), (0.003, "FA", 106, 101, 0),
                                      (0.004, "A", 107, 107, 0)]:
        t.send(ts, ">", flags, seq, ack, plen, src=me, dst=me)
    (r,) = t.finish(10.0)
    assert r["client"] == r["server"] == "127.0.0.1:5000"
    assert (r["roles_from"], r["end"], r["closer"], r["reset_by"]) == \
        ("syn", "half_closed", "server", None)
    client, server = r["endpoints"]["client"], r["endpoints"]["server"]
    assert (client["packets"], client["payload_bytes"], client["syn"], client["fin"]) == \
        (1, 0, 1, 0)
    assert (server["packets"], server["payload_bytes"], server["syn"], server["fin"]) == \
        (4, 5, 1, 1)
    assert transitions(r, "client") == [(0.0, State.SYN_SENT, False)]
    assert transitions(r, "server") == [(0.0, State.SYN_RCVD, False),
                                        (0.003, State.FIN_WAIT_1, False)]
    assert t.result()["connections"]["total"] == 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 12), st.sampled_from([0, 5, 10, 30]),
                          st.booleans(), st.sampled_from(["", "F"])), max_size=40))
def test_random_holes_and_acks_keep_zeek_view_sane(steps):
    """Zeek's reassembler: data at random offsets (holes, overlaps, more out-of-order
    blocks than are kept), some cut by the snaplen, ACKs anywhere, FINs from both sides
    (closes deferred while data is pending). One Zeek connection, the client its
    originator, every packet counted; its history in Zeek's letters (no SYN from the
    responder, no SYN/ACK from the originator), its conn_state one of Zeek's; the bytes
    missed in gaps at most the client's sequence span, as sent or acknowledged (Zeek counts
    data acknowledged but never seen as missed)."""
    t = Transcript()
    t.send(0.0, ">", "S", 100).send(0.1, "<", "SA", 900, 101).send(0.2, ">", "A", 101, 901)
    client, server, top = 2, 1, 101
    for k, (data, offset, length, cut, fin) in enumerate(steps):
        ts = 0.3 + k / 100
        if data:
            t.send(ts, ">", "PA" + fin, 101 + 10 * offset, 901, length, cut=cut)
            client += 1
            top = max(top, 101 + 10 * offset + length)
        else:
            t.send(ts, "<", "A" + fin, 901, 101 + 10 * offset)
            server += 1
            top = max(top, 101 + 10 * offset)
    (r,) = t.finish(100.0)
    assert "zeek_later" not in r
    z = r["zeek"]
    assert z["orig"] == "client"
    assert (z["orig_pkts"], z["resp_pkts"]) == (client, server)
    assert set(z["history"]) <= set("ShADadFfRrTtGgWwCcIiQq^")
    assert z["history"].startswith("ShA")
    assert z["conn_state"] in ZEEK_CONN_STATES
    assert 0 <= z["missed_bytes"] <= top - 101


def test_samples_briefs_are_the_records_in_brief():
    """The corpus check's bulk path (on_brief) says what the full records say, on every
    shipped sample."""
    assert EXPECTED
    for expected in EXPECTED:
        files = captures(expected)
        assert all(Path(f).exists() for f in files)
        records: list[dict] = []
        briefs: list[list] = []
        analyze(files, on_record=records.append, on_brief=briefs.extend)
        assert briefs == [brief(r) for r in records]
        assert len(briefs) > 0, expected


def test_read_ahead_keeps_order_and_buffers_valid(tmp_path):
    """Batches decoded in the reader thread arrive in order, and each one is intact while
    the caller works on it (the reader writes into rotating buffers)."""
    from pcapstate.pipeline import read_ahead
    from pcapstate.read.capture import open_captures

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


def test_a_stop_waits_for_a_files_batch_but_not_for_a_quiet_stream():
    """stop() asked from the start: a file's reader still gives its first batch, however
    long decoding it takes (a Dask partition loading its decoder stopped before it once,
    where the single run did not); a live stream's reader is left while it waits."""
    import time

    from pcapstate.pipeline import read_ahead

    def slow():
        time.sleep(0.5)  # longer than the 0.2 s read_ahead waits between questions
        yield Batch.empty(1)
        yield Batch.empty(1)

    for live, batches in ((False, 1), (True, 0)):
        cut = [False]
        assert len(list(read_ahead(slow(), lambda: True, cut, live=live))) == batches
        assert cut[0]


@pytest.mark.parametrize("end", [11 * 70.0 + 1, 12 * 70.0 + 5])
def test_a_history_longer_than_the_record_keeps_its_latest_move_and_says_so(end):
    """A listener whose request expires again and again (its SYN/ACKs lost) while the client
    sends its SYN again every 70 s: a new request each time, two moves (CLOSED, then
    SYN_RCVD again) per request, 23 or more in all, more than the 8 a record holds (MAXT).
    The first 7 are kept, the last place holds the latest (so the final state and the time
    it was entered are true: the capture ends before the last request expired, in
    SYN_RCVD, or after, in CLOSED), and the moves between are counted, not dropped
    silently (before, the first case ended in SYN_RCVD with its transitions in CLOSED)."""
    from pcapstate.track.slots import MAXT

    t = Transcript()
    for i in range(12):  # 11 SYN/ACKs with a new initial sequence number: new requests
        t.send(i * 70.0, ">", "S", 1000)
        t.send(i * 70.0 + 0.001, "<", "SA", 5000 + i * 100000, 1001)
    (r,) = t.finish(end)
    server = r["endpoints"]["server"]
    moves = [m["state"] for m in server["transitions"]]
    assert r["anomalies"]["synack_new_request"] == 11
    assert MAXT == 8 and len(moves) == MAXT
    assert moves[:MAXT - 1] == ["SYN_RCVD", "CLOSED"] * 3 + ["SYN_RCVD"]
    assert moves[-1] == server["final_state"]
    made = 1 + 2 * 11 + (server["final_state"] == "CLOSED")
    assert r["anomalies"]["transitions_dropped"] == made - MAXT


def test_a_borrowed_array_is_the_array_itself():
    # jit.borrowed: a view without a reference count, for the tracker's compiled loop;
    # what is written through it lands in the array, strides and shape kept
    from pcapstate import jit

    borrowed = jit.borrowing()

    @jit.njit(cache=False)
    def fill(a):
        b = borrowed(a)
        for i in range(b.shape[0]):
            for j in range(b.shape[1]):
                b[i, j] = i * 10 + j
        return b.size, b.strides[0], b.strides[1]

    whole = np.zeros((3, 4))
    a = whole[:, ::2]
    assert fill(a) == (6, a.strides[0], a.strides[1])
    assert whole.tolist() == [[0, 0, 1, 0], [10, 0, 11, 0], [20, 0, 21, 0]]
