"""Properties of the engine over many inputs: memory bounded by live connections; any
sequence of segments (window scales, windows, RSTs at window edges, bad checksums) yields
consistent verdicts, never an exception, and a bad checksum changes only Zeek's view; a RST
is taken exactly when it falls in its receiver's window (RFC 9293, RFC 7323)."""

from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcapstate.vocab import Closer, EndKind, State
from tests.transcript import Transcript, handshake, transitions

ROLES = ("client", "server")


def test_closed_connections_leave_the_table():
    """3,000 connections, one a second, each closed by the client: only those still in
    TIME_WAIT (60 s) or lingering are live, however long the capture is."""
    t = Transcript()
    for i in range(3000):
        ts, port = float(i), 20000 + i
        cisn, sisn = 1000 + i * 7, 900_000 + i * 13
        peer = (bytes([10, 0, 0, 1]), port)
        for args in (
            (ts, ">", "S", cisn), (ts + 0.001, "<", "SA", sisn, cisn + 1),
            (ts + 0.002, ">", "A", cisn + 1, sisn + 1),
            (ts + 0.010, ">", "FA", cisn + 1, sisn + 1), (ts + 0.011, "<", "FA", sisn + 1,
                                                         cisn + 2),
            (ts + 0.012, ">", "A", cisn + 2, sisn + 2),
        ):
            t.send(*args, src=peer)
        assert t.tracker.live <= 70
    assert len(t.records) > 2900  # retired while reading, not at the end
    assert t.tracker.peak_live <= 70
    records = t.finish(3000.0)
    assert len(records) == 3000 == t.result()["connections"]["total"]
    assert {(r["end"], r["closer"]) for r in records} == {("closed", "client")}
    for i, r in enumerate(records):
        # TIME_WAIT from the server's FIN (its capture time), for 60 s: the last 60 still
        # in it at the capture's end
        trs = transitions(r, "client")
        tw = trs.index((i + 0.011, State.TIME_WAIT, False))
        expired = i + 0.011 + 60.0
        assert trs[tw + 1:] == ([(expired, State.CLOSED, True)] if expired <= 3000.0 else [])


FLAG_SETS = ["S", "SA", "A", "PA", "FA", "F", "R", "RA"]
segments = st.lists(
    st.tuples(
        st.floats(0, 0.5),  # time step (out of order when negative is drawn below)
        st.booleans(),  # direction
        st.sampled_from(FLAG_SETS),
        # sequence number: an offset from what the sender has sent so far, or from the
        # edge of the receiver's window (its last acknowledgment plus its last window,
        # shifted by a window scale)
        st.one_of(st.integers(-3, 3).map(lambda k: (None, k)),
                  st.tuples(st.sampled_from([0, 7, 14]), st.integers(-1, 1))),
        st.integers(-3, 3),  # acknowledgement offset from what the peer has sent
        st.sampled_from([0, 0, 1, 100]),  # payload
        st.booleans(),  # step back in time
        st.sampled_from([65535, 100, 1, 0]),  # window
        st.sampled_from([None, 0, 7, 14]),  # window scale a SYN offers (None: no option)
        st.booleans(),  # a bad checksum (for Zeek's view only)
    ),
    max_size=40,
)


def play(segs: list[tuple], with_handshake: bool, cisn: int, sisn: int,
         bad_sums: bool) -> tuple[Transcript, float, Counter]:
    """The segments through a Transcript (Zeek's view checking checksums), those drawn
    with a bad checksum marked so or not; returns it, the capture end and what was sent."""
    t = Transcript(zeek_checksums=True)
    sent = {">": cisn + 1, "<": sisn + 1}
    acked = {">": sisn + 1, "<": cisn + 1}  # each side's last acknowledgment ...
    window = {">": 65535, "<": 65535}  # ... and window
    count: Counter = Counter()
    ts = 0.01
    if with_handshake:
        handshake(t, 0.0, cisn, sisn)
        count.update(segments=3)
    for step, forward, flags, (shift, dseq), dack, plen, back, win, wscale, bad in segs:
        ts = max(0.0, ts - step) if back else ts + step
        d, other = (">", "<") if forward else ("<", ">")
        seq = sent[d] + dseq if shift is None else acked[other] + (window[other] << shift) + dseq
        ack = sent[other] + dack
        t.send(ts, d, flags, seq, ack, plen=plen, win=win, wscale=wscale,
               bad_sum=bad and bad_sums)
        sent[d] = seq + plen + ("S" in flags) + ("F" in flags)
        if "A" in flags and "R" not in flags:
            acked[d] = ack
        window[d] = win
        count.update(segments=1, rst="R" in flags, payload=plen, bad=bad)
    return t, ts + 1000.0, count


def pcapstate_view(r: dict[str, Any]) -> dict[str, Any]:
    """A record without Zeek's view of it."""
    return {k: v for k, v in r.items() if k not in ("zeek", "zeek_later")}


@settings(max_examples=250, deadline=None)
@given(segments, st.booleans(), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_any_segment_sequence_gives_consistent_verdicts(segs, with_handshake, cisn, sisn):
    t, end, sent = play(segs, with_handshake, cisn, sisn, bad_sums=False)
    records = t.finish(end)
    assert t.tracker.live == 0
    assert t.result()["connections"]["total"] == len(records)
    # every segment is one endpoint's packet (Transcript gives each its own IP id: no
    # duplicates) and one Zeek view's
    assert sum(r["endpoints"][e]["packets"] for r in records for e in ROLES) == sent["segments"]
    assert sum(r["endpoints"][e]["payload_bytes"] for r in records for e in ROLES) \
        == sent["payload"]
    views = [z for r in records for z in (r["zeek"], *r.get("zeek_later", []))]
    assert sum(z["orig_pkts"] + z["resp_pkts"] for z in views) == sent["segments"]
    assert not any("C" in z["history"] or "c" in z["history"] for z in views)
    # each RST is counted by its sender, or, on a connection already closed, as such
    assert sum(r["endpoints"][e]["rst"] for r in records for e in ROLES) \
        + sum(r["anomalies"].get("rst_after_close", 0) for r in records) == sent["rst"]
    for r in records:
        assert r["end"] in set(EndKind) and r["closer"] in set(Closer)
        # a RST counted and not out of window was taken: the connection was reset
        accepted = sum(r["endpoints"][e]["rst"] for e in ROLES) \
            - r["anomalies"].get("rst_out_of_window", 0)
        assert accepted >= 0 and (accepted > 0) == (r["reset_by"] is not None)
        assert (r["end"] in ("reset_by_client", "reset_by_server", "refused")) \
            == (r["reset_by"] is not None)
        for role in ROLES:
            trs = transitions(r, role)
            assert all(s in set(State) for _, s, _ in trs)  # a state's name
            times = [ts for ts, _, _ in trs]
            assert times == sorted(times) and all(ts <= end for ts in times)
            if trs and trs[-1][1] in (State.CLOSED, State.TIME_WAIT):
                # after 1,000 s every timer has run out
                assert trs[-1][1] == State.CLOSED
            assert r["endpoints"][role]["final_state"] == (trs[-1][1] if trs else State.CLOSED)

    # the same segments, some with bad checksums: pcapstate's own states take every
    # segment; only Zeek's view leaves those out (and marks them, C)
    marked, _, _ = play(segs, with_handshake, cisn, sisn, bad_sums=True)
    marked_records = marked.finish(end)
    assert [pcapstate_view(r) for r in marked_records] == [pcapstate_view(r) for r in records]
    ours, theirs = t.result(), marked.result()
    for result in (ours, theirs):
        del result["connections"]["zeek_conn_states"]
    assert ours == theirs
    views = [z for r in marked_records for z in (r["zeek"], *r.get("zeek_later", []))]
    assert sum(z["orig_pkts"] + z["resp_pkts"] for z in views) == sent["segments"] - sent["bad"]
    assert any("C" in z["history"] or "c" in z["history"] for z in views) == (sent["bad"] > 0)


# RSTs at the edges of the receiver's window. RFC 9293 3.10.7.4: a RST is taken when
# RCV.NXT =< SEG.SEQ < RCV.NXT + RCV.WND (SEG.SEQ = RCV.NXT for a window of 0); the engine's
# RCV.NXT is the receiver's last acknowledgment. RFC 7323 2.2: the window is shifted by the
# receiver's scale only when both SYNs offered the option, and never in a SYN segment.
CISN, SISN = 1000, 5000
RFC_EDGE = ("the engine takes a RST at RCV.NXT + RCV.WND (rst_acceptable: <=), which RFC "
            "9293's window (SEG.SEQ < RCV.NXT + RCV.WND) leaves out")
ZERO_WINDOW = ("the engine takes a RST at RCV.NXT + 1 in a zero window (max(window, 1)); "
               "RFC 9293 takes only SEG.SEQ = RCV.NXT")


def reset_at(offset: int, receiver: str, scales: tuple[int | None, int | None], win: int,
             in_synack: bool = False) -> dict[str, Any]:
    """A handshake whose SYNs offer these window scales (client's, server's; None: no
    option), the receiver's window then `win` (in a segment after the handshake; with
    `in_synack`, the server's only window is its SYN/ACK's), and a RST from its peer at
    the receiver's last acknowledgment + `offset`: the connection's record."""
    t = Transcript()
    synwin = win if in_synack else 65535
    t.send(0.0, ">", "S", CISN, wscale=scales[0], win=synwin)
    t.send(0.001, "<", "SA", SISN, CISN + 1, wscale=scales[1], win=synwin)
    if receiver == "client":
        t.send(0.002, ">", "A", CISN + 1, SISN + 1, win=win)
        t.send(0.003, "<", "R", SISN + 1 + offset)
    else:
        t.send(0.002, ">", "A", CISN + 1, SISN + 1)
        if not in_synack:
            t.send(0.003, "<", "A", SISN + 1, CISN + 1, win=win)
        t.send(0.004, ">", "R", CISN + 1 + offset)
    (r,) = t.finish(10.0)
    return r


def taken(r: dict[str, Any], receiver: str) -> bool:
    """Whether the RST reset the connection; asserts the record says one thing or the
    other throughout."""
    sender = "server" if receiver == "client" else "client"
    assert r["endpoints"][sender]["rst"] == 1
    if r["reset_by"] is None:
        assert (r["end"], r["anomalies"]) == ("open", {"rst_out_of_window": 1})
        assert {final for final in (r["endpoints"][e]["final_state"] for e in ROLES)} == \
            {State.ESTABLISHED}
        return False
    assert (r["end"], r["reset_by"], r["anomalies"]) == (f"reset_by_{sender}", sender, {})
    assert [r["endpoints"][e]["final_state"] for e in ROLES] == [State.CLOSED] * 2
    return True


def edge_cases() -> list:
    cases = []
    for scales in ((7, 7), (7, None), (None, 7), (None, None)):
        wnd = 100 << 7 if scales == (7, 7) else 100
        for receiver in ("server", "client"):
            for offset, expected in ((-1, False), (0, True), (wnd - 1, True), (wnd, False),
                                     (wnd + 1, False)):
                marks = [pytest.mark.xfail(strict=True, reason=RFC_EDGE)] if offset == wnd \
                    else []
                cases.append(pytest.param(scales, receiver, offset, expected, marks=marks,
                                          id=f"{scales}-{receiver}-{offset}"))
    return cases


@pytest.mark.parametrize(("scales", "receiver", "offset", "expected"), edge_cases())
def test_a_rst_is_taken_inside_the_receivers_window_only(scales, receiver, offset, expected):
    """A window of 100, scaled by 7 when both SYNs offer a scale of 7 (12,800 bytes), not
    scaled when either SYN has no option."""
    assert taken(reset_at(offset, receiver, scales, 100), receiver) is expected


@pytest.mark.parametrize(("offset", "expected"), [
    (-1, False), (0, True),
    pytest.param(1, False, marks=pytest.mark.xfail(strict=True, reason=ZERO_WINDOW))])
@pytest.mark.parametrize("receiver", ["server", "client"])
def test_a_zero_window_takes_a_rst_at_rcv_nxt_only(receiver, offset, expected):
    assert taken(reset_at(offset, receiver, (7, 7), 0), receiver) is expected


@pytest.mark.parametrize(("offset", "expected"), [
    (99, True),
    pytest.param(100, False, marks=pytest.mark.xfail(strict=True, reason=RFC_EDGE)),
    (101, False), (100 << 7, False), ((100 << 7) + 1, False)])
def test_a_synacks_window_is_not_scaled(offset, expected):
    """Both SYNs offer a scale of 7, but the server's only window, 100, is in its SYN/ACK,
    where it is not scaled (RFC 7323 2.2; Linux's tcp_ack_update_window likewise): a RST
    from the client 101 bytes past the server's RCV.NXT is outside it."""
    assert taken(reset_at(offset, "server", (7, 7), 100, in_synack=True), "server") is expected
