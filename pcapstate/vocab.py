"""The one vocabulary of pcapstate: endpoint states, end kinds, closers, anomalies.

Every name here appears verbatim in the JSON output and the reports; change one and the
schema version changes with it.
"""

from enum import IntEnum, StrEnum
from typing import Any

#: TCP header flags (RFC 9293, section 3.1).
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
#: A SYN's options, as bits (decode/frames.py's synopt column, track/slots.py's syn_opts):
#: SACK permitted (RFC 2018), timestamps (RFC 7323), a window scale (RFC 7323)
SYN_SACK, SYN_TS, SYN_WS = 1, 2, 4


def codes(names: Any) -> dict[Any, int]:
    """Each member of an enumeration (or key of a dict, item of a tuple) with its code: its
    position, as compiled code and packed records count it. Code that needs a code takes it
    from here by name, never by writing the number."""
    return {name: i for i, name in enumerate(names)}


class State(StrEnum):
    """An endpoint's TCP state (RFC 9293, section 3.3.2), as inferred from the capture.

    LISTEN is not used: a responder has no socket for a connection until it answers the
    SYN, so it starts CLOSED and goes to SYN_RCVD when its SYN/ACK is seen.
    """

    CLOSED = "CLOSED"
    SYN_SENT = "SYN_SENT"
    SYN_RCVD = "SYN_RCVD"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN_WAIT_1"
    FIN_WAIT_2 = "FIN_WAIT_2"
    CLOSE_WAIT = "CLOSE_WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST_ACK"
    TIME_WAIT = "TIME_WAIT"



#: States that should not last: an endpoint found in one of them for longer than a
#: threshold is reported as stuck.
STUCK_STATES = (
    State.CLOSE_WAIT,
    State.FIN_WAIT_2,
    State.LAST_ACK,
    State.CLOSING,
    State.SYN_RCVD,
    State.SYN_SENT,
)

#: The stuck states as people type them on the command line and in pcapstate.toml.
STATE_NAMES = {st.value.lower().replace("_", "-"): st for st in STUCK_STATES}


#: The diagnoses (the catalogue is derive/diagnoses.py's), and as people type them.
DIAGNOSES = ("close_wait_leak", "peer_gone", "reset_with_data_loss", "keepalive_race",
             "syn_retransmitted", "accept_queue_overflow", "handshake_timeout",
             "refused_burst", "zero_window_stall", "time_wait_pressure")
DIAGNOSIS_NAMES = {d.replace("_", "-"): d for d in DIAGNOSES}


def stuck_states(names: str | list[str], diagnoses: bool = False) -> list[Any]:
    """"close-wait,last-ack" (or a list; "any" for all) as states; with `diagnoses`, names
    of diagnoses too ("keepalive-race", as names, not states). ValueError for a name that is
    neither, or for none at all."""
    if isinstance(names, str):
        names = names.split(",")
    keys = [n.strip().lower().replace("_", "-") for n in names if n.strip()]
    known = STATE_NAMES | (DIAGNOSIS_NAMES if diagnoses else {})
    bad = [k for k in keys if k not in known and k != "any"]
    if bad or not keys:
        what = f"unknown state {', '.join(bad)}" + (" (nor a diagnosis)" if diagnoses else "") \
            if bad else "no state given"
        raise ValueError(f"{what}; choose from {', '.join(known)}, any")
    if "any" in keys:
        keys = [*STATE_NAMES, *(k for k in keys if k in DIAGNOSIS_NAMES)]
    return list(dict.fromkeys(known[k] for k in keys))


#: The state names `ss -tan` prints, mapped to ours.
SS_STATES = {
    "ESTAB": State.ESTABLISHED,
    "SYN-SENT": State.SYN_SENT,
    "SYN-RECV": State.SYN_RCVD,
    "FIN-WAIT-1": State.FIN_WAIT_1,
    "FIN-WAIT-2": State.FIN_WAIT_2,
    "CLOSE-WAIT": State.CLOSE_WAIT,
    "CLOSING": State.CLOSING,
    "LAST-ACK": State.LAST_ACK,
    "TIME-WAIT": State.TIME_WAIT,
}


class EndKind(StrEnum):
    """How a connection ended, as far as the capture shows."""

    CLOSED = "closed"  # both sides sent a FIN
    HALF_CLOSED = "half_closed"  # exactly one side sent a FIN, no reset
    RESET_BY_CLIENT = "reset_by_client"  # an in-window RST from the client
    RESET_BY_SERVER = "reset_by_server"  # an in-window RST from the server
    REFUSED = "refused"  # the SYN was answered by a RST
    UNANSWERED = "unanswered"  # the SYN was never answered
    HANDSHAKE_INCOMPLETE = "handshake_incomplete"  # SYN/ACK seen, never acknowledged
    OPEN = "open"  # no FIN and no RST by the end of the capture
    EVICTED = "evicted"  # dropped from a full connection table before it ended


class Tier(IntEnum):
    """What a full connection table (Settings.max_connections) weighs in choosing which
    connection to evict (track/connections.py: _tier, _evict), decided by the endpoints'
    states after the connection's last segment."""

    FINISHED = 0  # both CLOSED or TIME_WAIT: only a timer or stragglers left to see
    ATTEMPT = 1  # no endpoint past SYN_SENT/SYN_RCVD: a handshake not (yet) completed
    OPEN = 2  # everything else: established, closing, or stuck (CLOSE_WAIT...)


class Closer(StrEnum):
    """Who closed first: the sender of the first FIN (the active closer)."""

    CLIENT = "client"
    SERVER = "server"
    BOTH = "both"  # simultaneous close: each sent its FIN before it saw the other's
    NONE = "none"


class CloserEvidence(StrEnum):
    """How the capture established a connection's active closer."""

    FIN_SEEN = "fin_seen"  # its FIN, before any of the peer's, and the peer had not closed
    #                        before the capture (its start or its data are in it)
    RST_SEEN = "rst_seen"  # likewise, its RST, without a FIN first
    INFERRED = "inferred"  # its FIN was before the capture: the peer's FIN was answered by
    #                        its RST (it had no socket any more); the peer was in CLOSE_WAIT
    UNKNOWN = "unknown"  # the first to close in the capture, which began after the
    #                      connection opened: the peer may have closed before it began


class Roles(StrEnum):
    """How the client (originator) and server (responder) were told apart."""

    SYN = "syn"  # the client sent the first SYN
    SYNACK = "synack"  # no SYN seen; the server sent the SYN/ACK
    PORT = "port"  # neither seen; guessed from the ports (well-known/ephemeral)


class Censor(StrEnum):
    """Whether a state's duration was measured whole or cut by the capture's edges."""

    COMPLETE = "complete"
    RIGHT = "right"  # still running at capture end: a lower bound
    LEFT = "left"  # began before the capture started
    BOTH = "both"  # began before the capture and still running at its end


#: Surprising traffic is counted under one of these names and never raises.
ANOMALIES = {
    "timestamp_backwards": "a segment's timestamp is earlier than the connection's last one",
    "duplicate_segment": "the same segment captured twice (same IP id, flags, seq, ack, length)",
    "syn_retransmitted": "a SYN sent again with the same initial sequence number",
    "synack_retransmitted": "a SYN/ACK sent again with the same initial sequence number",
    "fin_retransmitted": "a FIN sent again at the same sequence number",
    "syn_inside_connection": "a SYN with a new sequence number on a connection still open",
    "fin_seq_changed": "a second FIN at a different sequence number than the first",
    "rst_out_of_window": "a RST whose sequence number is outside the receiver's window",
    "rst_after_close": "a RST for a connection both of whose endpoints had closed",
    "packet_after_close": "a segment on a connection both of whose endpoints had closed",
    "fin_before_handshake": "a FIN on a connection whose handshake was not complete",
    "bad_synack_ack": "a SYN/ACK that does not acknowledge the client's SYN",
    "retransmission": "a segment with data (no SYN or FIN) that starts before the highest "
                      "sequence number its sender had sent: a retransmission, or a segment "
                      "out of order (Wireshark tells those apart by timing)",
    "keep_alive": "a segment of 0 or 1 byte at one less than the highest sequence number "
                  "its sender had sent, no SYN, FIN or RST (Wireshark's rule)",
    "synack_new_request": "a SYN/ACK with a new initial sequence number, its first not "
                          "acknowledged: the listener's first request expired (its "
                          "SYN/ACKs retried in vain) and a SYN sent again made a new one",
    "transitions_dropped": "a move of an endpoint's not kept in its transitions, which hold "
                           "8 (every lifecycle's moves): the last place always holds its "
                           "latest move, so the ones between were dropped and the state "
                           "before it seems to have lasted their time too (a listener whose "
                           "requests expired again and again makes two moves each)",
}


#: Wireshark's TCP analysis flags that the tshark engine counts per connection (bit i of a
#: segment's flags is entry i), and `resent`: segments with any of the first four.
WIRESHARK_ANALYSIS = {
    "retransmission": "tcp.analysis.retransmission",
    "fast_retransmission": "tcp.analysis.fast_retransmission",
    "spurious_retransmission": "tcp.analysis.spurious_retransmission",
    "out_of_order": "tcp.analysis.out_of_order",
    "duplicate_ack": "tcp.analysis.duplicate_ack",
    "zero_window": "tcp.analysis.zero_window",
    "keep_alive": "tcp.analysis.keep_alive",
    "resent": "any of the first four: the segment was sent before (or arrived out of order)",
}


#: A handshake whose two gaps are both shorter than this tells nothing of where the capture
#: was taken: that is a host's own processing time, not a path.
TOO_CLOSE = 100e-6
#: The share of the round trip on one side under which the capture is called near the other.
NEAR = 0.2
#: Handshakes that tell, at least, before the vantage point is called anything but unknown:
#: this many, and this share of all the complete handshakes (2 of 188 tell nothing).
VANTAGE_MIN_TELLING, VANTAGE_MIN_SHARE = 3, 0.1
