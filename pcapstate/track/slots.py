"""The packed record of one connection (a slot of the table), and the codes compiled code
uses for the vocabulary.

A connection is a slot: one record holds both endpoints' states, transitions and what
they sent; fields shaped (2,) are per endpoint (0 = client, 1 = server). Zeek's view of it,
when an output needs that, is a record of its own (track/zeek_view.py VIEW), at the same
index of a table beside. One record per connection keeps what a segment
touches together in memory, and compiled functions pass a record by pointer. The tracker
hands retired connections out as copies of these records (derive/ reads them).
"""

from typing import Any

import numpy as np

from pcapstate.vocab import (
    ANOMALIES,
    WIRESHARK_ANALYSIS,
    Closer,
    CloserEvidence,
    EndKind,
    Roles,
    State,
    Tier,
    codes,
)

# The vocabulary's codes (vocab.codes), taken by name: the compiled code's constants.
STATES = list(State)
_S = codes(State)
CLOSED, SYN_SENT, SYN_RCVD = _S[State.CLOSED], _S[State.SYN_SENT], _S[State.SYN_RCVD]
ESTABLISHED, FIN_WAIT_1 = _S[State.ESTABLISHED], _S[State.FIN_WAIT_1]
FIN_WAIT_2, CLOSE_WAIT = _S[State.FIN_WAIT_2], _S[State.CLOSE_WAIT]
CLOSING, LAST_ACK, TIME_WAIT = _S[State.CLOSING], _S[State.LAST_ACK], _S[State.TIME_WAIT]
ANOMALY_NAMES = list(ANOMALIES)
_A = codes(ANOMALIES)
A_BACKWARDS, A_DUPLICATE = _A["timestamp_backwards"], _A["duplicate_segment"]
A_SYN_RETX, A_SYNACK_RETX = _A["syn_retransmitted"], _A["synack_retransmitted"]
A_FIN_RETX, A_SYN_INSIDE = _A["fin_retransmitted"], _A["syn_inside_connection"]
A_FIN_SEQ_CHANGED, A_RST_OUT = _A["fin_seq_changed"], _A["rst_out_of_window"]
A_RST_AFTER, A_PACKET_AFTER = _A["rst_after_close"], _A["packet_after_close"]
A_FIN_BEFORE, A_BAD_SYNACK = _A["fin_before_handshake"], _A["bad_synack_ack"]
A_RETX, A_KEEP_ALIVE = _A["retransmission"], _A["keep_alive"]
A_NEW_REQUEST, A_MOVES_DROPPED = _A["synack_new_request"], _A["transitions_dropped"]
ROLE_NAMES = list(Roles)
BY_SYN, BY_SYNACK, BY_PORT = (codes(Roles)[r] for r in (Roles.SYN, Roles.SYNACK, Roles.PORT))
T_FINISHED, T_ATTEMPT, T_OPEN = int(Tier.FINISHED), int(Tier.ATTEMPT), int(Tier.OPEN)
END_NAMES = [k.value for k in EndKind]
STATE_NAMES = [st.value for st in State]
CLOSER_NAMES = [c.value for c in Closer]
EVIDENCE_NAMES = [c.value for c in CloserEvidence]
# Transitions per endpoint: each move into a state other than CLOSED comes from a one-shot
# event (the open, the first SYN, FIN, and the first ACK of each side's SYN and FIN), so 7 at
# most, then CLOSED: 8 hold every lifecycle (6 at most in 3 million endpoints of a kernel
# capture). A listener's expired request and the new one a SYN sent again makes are two
# more each time: endpoints.enter keeps the latest in the last place, counting the dropped
# ones (transitions_dropped).
MAXT = 8
#: A slot holds each endpoint's first INLINE moves (what a live connection needs most of the
#: time: a handshake, or an attempt and its expiry); its later ones go in a block of MOVES,
#: taken from a pool beside the table (Tracker.P) at its (INLINE + 1)th move, given back when
#: it retires. So a connection's moves take memory as it makes them: 48 bytes in its slot,
#: and 64 a block (endpoints.move_at reads a move, endpoints.enter writes one).
INLINE = 2
#: a block of an endpoint's moves INLINE to MAXT - 1; `next`: in a free block, the next free
#: one (the pool's first block is its header: endpoints._take)
MOVES = np.dtype([("ts", np.float64, MAXT - INLINE), ("st", np.int8, MAXT - INLINE),
                  ("timer", np.uint8, MAXT - INLINE), ("next", np.int32)])
#: tr_timer's value for a move no packet shows, inferred: an endpoint closed by its peer's
#: RST when the RST reached it, after segments it sent before (endpoints._sent_before_reset)
INFERRED_MOVE = 2

# Sequence numbers, acknowledgments and scales are -1 until seen; flags are uint8 (numba has
# no nested boolean arrays).
SLOT = np.dtype([
    # each endpoint's state, and its transitions: (time, state entered, entered by a timer
    # rather than a segment: 1, or inferred: INFERRED_MOVE), ntr of them, the first INLINE
    # here (mv_), the rest in block mv_more of the pool (0: none); left: its first state
    # began before the capture
    ("st", np.int8, 2), ("ntr", np.int8, 2), ("mv_ts", np.float64, (2, INLINE)),
    ("mv_st", np.int8, (2, INLINE)), ("mv_timer", np.uint8, (2, INLINE)),
    ("mv_more", np.int32, 2), ("left", np.uint8, 2),
    # its SYN (syn_ts: the capture time of its latest transmission; syn_gap: the latest
    # interval between its transmissions, syn_run how many in a row were that long, up to
    # 255 (next_syn reads up to 4); syn_opts: the options its first offered,
    # decode/frames.py's SYN_SACK, SYN_TS, SYN_WS) and FIN
    # (fin_seq: the sequence number the FIN occupies), each acknowledged or not
    ("isn", np.int64, 2), ("syn_ts", np.float64, 2), ("syn_gap", np.float32, 2),
    ("syn_run", np.uint8, 2), ("syn_acked", np.uint8, 2), ("syn_opts", np.uint8, 2),
    ("fin_seq", np.int64, 2), ("fin_ts", np.float64, 2), ("fin_acked", np.uint8, 2),
    # last_ack: the highest acknowledgment it sent (its RCV.NXT); nxt: one past the highest
    # sequence number it sent (SND.NXT); win: its last advertised window, unscaled (in a
    # SYN, never scaled: -1 - it, endpoints.window_of)
    ("last_ack", np.int64, 2), ("nxt", np.int64, 2), ("win", np.int32, 2),
    ("wscale", np.int8, 2),
    # fw2_alive: it acknowledged new data in FIN_WAIT_2: half-closed, not orphaned
    ("fw2_alive", np.uint8, 2), ("packets", np.int64, 2), ("payload", np.int64, 2),
    ("syns", np.int32, 2), ("fins", np.int32, 2), ("rsts", np.int32, 2),
    # the last segment each endpoint sent (seq, ack, payload; its ip id and flags), for
    # duplicates; 0 before any (an IP id of 0 is never compared)
    ("sig", np.uint32, (2, 3)), ("sig_id", np.uint16, 2), ("sig_flags", np.uint16, 2),
    ("last_seen", np.float64, 2),
    # addresses: two big-endian 64-bit halves (IPv4 in the low half, v6 false)
    ("ip_hi", np.uint64, 2), ("ip_lo", np.uint64, 2), ("port", np.uint16, 2),
    # cid: the connection's number, in order of its first segment; roles: how client and
    # server were told apart (ROLE_NAMES); reset_by: the endpoint whose in-window RST ended
    # it (-1 none); inferred: its endpoints' first states (left) were inferred from the RST
    # that answered a FIN (endpoints.closed_before); anom: anomalies counted (ANOMALY_NAMES);
    # scheduled: the deadline the timer heap holds for it (NaN none; its own may be later:
    # connections.py _schedule); tunnel: the tunnel it is in (decode/unwrap.py), 0
    ("cid", np.int64), ("roles", np.int8), ("v6", np.uint8), ("tunnel", np.int32),
    ("first_ts", np.float64),
    ("last_ts", np.float64), ("reset_by", np.int8), ("inferred", np.uint8),
    ("anom", np.int32, len(ANOMALY_NAMES)),
    ("scheduled", np.float64),
    # what diagnoses (derive/diagnoses.py) read, per endpoint: heard: the time of its last
    # segment but a RST (when it was last heard from alive); run: bytes of new data in its
    # latest run (since the peer's data before it; talked: which one sent data last, -1
    # none); quiet_retx: segments it sent again (data or FIN) since it last heard from the
    # peer, retx_gap: the interval before the latest (its retransmission timeout); fin_idle:
    # how long no data had been sent either way when it sent its FIN (data_ts: when data was
    # last sent, first_ts before any); crossed: when it first sent data whose acknowledgment
    # does not cover the peer's FIN, captured after that FIN (they crossed), NaN none;
    # rst_unacked: bytes it had sent that the peer had not acknowledged when a RST ended the
    # connection. rst_answer: that RST had no ACK and took its sequence number from the
    # peer's last acknowledgment: the answer of a host with no socket (RFC 9293, 3.10.7.1).
    # synack_after_ack: SYN-ACKs the listener sent again a retransmission timeout or more
    # after the client's handshake ACK was captured (a full accept queue drops that ACK);
    # zw_since: since when the endpoint has advertised a zero window (NaN: it does not),
    # zw_longest: its longest zero-window stretch that ended, zw_stalls: how many began;
    # tw_reused: a new connection on the 4-tuple took over while an endpoint was in
    # TIME_WAIT
    ("heard", np.float64, 2), ("run", np.int64, 2), ("talked", np.int8),
    ("quiet_retx", np.int32, 2), ("retx_gap", np.float32, 2),
    ("fin_idle", np.float32, 2), ("crossed", np.float64, 2), ("rst_unacked", np.int32, 2),
    ("rst_answer", np.uint8), ("data_ts", np.float64), ("synack_after_ack", np.int16),
    ("zw_since", np.float64, 2), ("zw_longest", np.float32, 2), ("zw_stalls", np.int16, 2),
    ("tw_reused", np.uint8),
    # the live connections of a tier (vocab.Tier) in a list, most recently active first (the
    # slots before and after, -1 none: 32 bits, as 2**31 slots would take 1.5 TB);
    # evicted: dropped from a full table (Settings.max_connections) before it ended
    ("tier", np.int8), ("lru_prev", np.int32), ("lru_next", np.int32), ("evicted", np.uint8),
])


def _row() -> np.dtype:
    """A retired connection as the tracker hands it on (derive/ reads it): its slot, with its
    moves whole (tr_ts, tr_st, tr_timer: MAXT an endpoint, ntr of them) after it, in place
    of the slot's own (mv_, left unnamed), and Wireshark's analysis flags, counted (ws:
    the tshark engine's, kept beside the slots only when a batch has any)."""
    fields: dict[str, Any] = dict(SLOT.fields or {})
    spec: dict[str, Any] = {"names": [], "formats": [], "offsets": []}
    for name, (fmt, offset) in fields.items():
        if not name.startswith("mv_"):
            spec["names"].append(name)
            spec["formats"].append(fmt)
            spec["offsets"].append(offset)
    offset = SLOT.itemsize
    for name, fmt in (("tr_ts", np.dtype((np.float64, (2, MAXT)))),
                      ("tr_st", np.dtype((np.int8, (2, MAXT)))),
                      ("tr_timer", np.dtype((np.uint8, (2, MAXT)))),
                      ("ws", np.dtype((np.int32, len(WIRESHARK_ANALYSIS))))):
        spec["names"].append(name)
        spec["formats"].append(fmt)
        spec["offsets"].append(offset)
        offset += fmt.itemsize
    spec["itemsize"] = offset
    return np.dtype(spec)  # type: ignore[call-overload]


ROW = _row()
