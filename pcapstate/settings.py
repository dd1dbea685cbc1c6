"""What the analysis assumes and when it calls something stuck. Every value is in the output."""

import re
from dataclasses import dataclass, field

from pcapstate.vocab import STUCK_STATES, State

MAX_CONNECTIONS = 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Timer values and thresholds, in seconds."""

    time_wait: float = 60.0
    """TIME_WAIT lasts this long, then the endpoint is CLOSED (Linux: fixed at 60 s)."""
    fin_timeout: float = 60.0
    """An orphaned FIN_WAIT_2 expires after this long (Linux net.ipv4.tcp_fin_timeout)."""
    linger: float = 5.0
    """A connection closed on both sides is kept this long for stragglers, then retired."""
    max_connections: int = MAX_CONNECTIONS
    """At most this many connections are followed at once (0: no limit). A new one beyond it
    evicts one (track/connections.py _evict), counted and reported. About 0.6 KiB each in
    the compiled engine (1.15 KiB with Zeek's view): about 570 MiB at the default (1.1 GiB),
    beside numba's 160 MiB (docs/benchmarks.md)."""
    zeek: bool = False
    """Follow each connection as Zeek sees it too (track/zeek_view.py): its conn_state, history
    and sizes, for a conn.log, the records and the summary's count of Zeek's conn_states.
    pipeline.analyze turns it on when an output needs it, or zeek_bare or zeek_checksums
    is set."""
    zeek_checksums: bool = False
    """Check TCP checksums for Zeek's view, as Zeek does unless run with -C: a segment with
    a wrong one is only marked (C). pcapstate's own state machine takes every segment."""
    zeek_bare: bool = False
    """Zeek's view as `zeek -b` loading base/protocols/conn alone: likely_server_ports is
    empty (the protocol scripts fill it), so a connection's first packet, SYN or not, makes
    its sender the originator."""
    stuck_after: dict[State, float] = field(default_factory=lambda: stuck_thresholds(10.0, 60.0))
    """An endpoint in one of these states for longer than this is reported as stuck."""


def settings_for(time_wait: float, fin_timeout: float, stuck_after: float,
                 close_wait_after: float | None = None, max_connections: int = MAX_CONNECTIONS,
                 zeek: bool = False, zeek_checksums: bool = False,
                 zeek_bare: bool = False) -> Settings:
    """Settings from the options people give (command line or pcapstate.toml)."""
    stuck = stuck_thresholds(stuck_after, fin_timeout)
    if close_wait_after is not None:
        stuck[State.CLOSE_WAIT] = close_wait_after
    return Settings(time_wait=time_wait, fin_timeout=fin_timeout, stuck_after=stuck,
                    max_connections=max_connections, zeek=zeek,
                    zeek_checksums=zeek_checksums, zeek_bare=zeek_bare)


def stuck_thresholds(after: float, fin_timeout: float) -> dict[State, float]:
    """`after` for every stuck-prone state but FIN_WAIT_2, which is normal until the orphan
    timer: it is stuck only when it outlives `fin_timeout` (a half-closed socket held open)."""
    limits = dict.fromkeys(STUCK_STATES, after)
    limits[State.FIN_WAIT_2] = max(after, fin_timeout)
    return limits


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "": 1.0}


def duration(text: str) -> float:
    """'10s', '500ms', '2m', '1h' or plain seconds; ValueError otherwise."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(us|ms|s|m|h|)\s*", text)
    if not m:
        raise ValueError(f"invalid duration {text!r} (examples: 10s, 500ms, 2m, 60)")
    return float(m.group(1)) * _UNITS[m.group(2)]
