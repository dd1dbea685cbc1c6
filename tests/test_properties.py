"""Properties of the engine over many inputs: memory bounded by live connections, and any
sequence of segments yields consistent verdicts, never an exception."""

from hypothesis import given, settings
from hypothesis import strategies as st

from pcapstate.verdict import closer, end_kind, intervals
from pcapstate.vocab import Closer, EndKind, State
from tests.test_machine import Transcript, handshake


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
    assert len(t.retired) > 2900  # retired while reading, not at the end
    assert t.tracker.peak_live <= 70
    t.finish(3000.0)
    assert len(t.retired) == 3000
    assert t.summary.connections == 3000


FLAG_SETS = ["S", "SA", "A", "PA", "FA", "F", "R", "RA"]
segments = st.lists(
    st.tuples(
        st.floats(0, 0.5),  # time step (out of order when negative is drawn below)
        st.booleans(),  # direction
        st.sampled_from(FLAG_SETS),
        st.integers(-3, 3),  # sequence offset from what the sender has sent so far
        st.integers(-3, 3),  # acknowledgement offset from what the peer has sent
        st.sampled_from([0, 0, 1, 100]),  # payload
        st.booleans(),  # step back in time
    ),
    max_size=40,
)


@settings(max_examples=1000, deadline=None)
@given(segments, st.booleans(), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_any_segment_sequence_gives_consistent_verdicts(segs, with_handshake, cisn, sisn):
    t = Transcript()
    sent = {">": cisn + 1, "<": sisn + 1}
    ts = 0.01
    if with_handshake:
        handshake(t, 0.0, cisn, sisn)
    for step, forward, flags, dseq, dack, plen, back in segs:
        ts = max(0.0, ts - step) if back else ts + step
        d = ">" if forward else "<"
        other = "<" if forward else ">"
        seq = sent[d] + dseq
        t.send(ts, d, flags, seq, sent[other] + dack, plen=plen)
        sent[d] = seq + plen + ("S" in flags) + ("F" in flags)
    conns = t.finish(ts + 1000.0)
    assert t.tracker.live == 0
    assert t.summary.connections == len(conns)
    for conn in conns:
        assert end_kind(conn) in EndKind and closer(conn) in Closer
        for e in conn.ep:
            assert all(isinstance(s, State) for _, s, _ in e.transitions)
            times = [ts for ts, _, _ in e.transitions]
            assert times == sorted(times)
            for iv in intervals(e, ts + 1000.0):
                assert iv.duration >= 0
            if e.transitions and e.transitions[-1][1] in (State.CLOSED, State.TIME_WAIT):
                # after 1,000 s every timer has run out
                assert e.transitions[-1][1] is State.CLOSED
