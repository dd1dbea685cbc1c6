"""Host evidence (`--ss FILE`): the sockets a host listed during the incident (`ss -tanp`,
`ss -tanpoi`, or `netstat -tanp`), joined to the capture's connections by 4-tuple. How many
of them agree with pcapstate's state of that endpoint at the moment the list was taken (and
which do not), and which processes held the sockets of the findings and diagnoses. This is
how engineers confirm a leak by hand; here it is done for every socket.

A file may hold several hosts' lists (a `# netns=NAME` or `# host=NAME` line starts each);
the time it was taken is a line `# taken at TIME` (seconds since 1970, or an ISO 8601 date),
or `--ss FILE@TIME`. Without one, the list is compared with the states at capture end, and
the result says so; one outside the capture (before its first packet, after its end) is
compared all the same, with a warning in the result's `warnings`.
"""

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from ipaddress import ip_address
from typing import Any

from pcapstate.vocab import SS_STATES, State
from pcapstate.words import seconds, when

#: netstat's state names, and the ss ones not in vocab.SS_STATES, as pcapstate's.
_NAMES = {**SS_STATES, "ESTABLISHED": State.ESTABLISHED, "SYN_SENT": State.SYN_SENT,
          "SYN_RECV": State.SYN_RCVD, "FIN_WAIT1": State.FIN_WAIT_1,
          "FIN_WAIT2": State.FIN_WAIT_2, "CLOSE_WAIT": State.CLOSE_WAIT,
          "CLOSING": State.CLOSING, "LAST_ACK": State.LAST_ACK, "TIME_WAIT": State.TIME_WAIT}
#: The process holding a socket, as ss says it (users:(("iperf",pid=4242,fd=3))) and netstat
#: (4242/iperf).
_SS_PROCESS = re.compile(r'\(\("(?P<name>[^"]*)",pid=(?P<pid>\d+)')
_NETSTAT_PROCESS = re.compile(r"(?P<pid>\d+)/(?P<name>\S+)")
_DISAGREE_SHOWN = 20  # disagreements listed per file


@dataclass(frozen=True, slots=True)
class Socket:
    state: State
    local: str  # ip:port as pcapstate writes it
    peer: str
    process: str | None  # "iperf (pid 4242)"
    host: str | None  # the namespace or host the list came from


@dataclass(slots=True)
class HostView:
    path: str
    taken_at: float | None
    sockets: list[Socket] = field(default_factory=list)
    processes: bool = False  # the list names processes (ss -p's users:(...), netstat -p's
    #                          PID/Program name): without, a socket's process is unknown


def _time(text: str) -> float:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _address(text: str) -> str | None:
    """ss's or netstat's local or peer address as pcapstate writes one; None for a wildcard."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]").split("%")[0]
    if not port.isdigit() or host in ("*", "0.0.0.0", "::"):
        return None
    try:
        ip = ip_address(host)
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def ss_file(path: str) -> str:
    """The file a --ss argument names: `path`, or what comes before `@TIME`."""
    return path.rpartition("@")[0] if "@" in path and not os.path.exists(path) else path


def read_ss(path: str) -> HostView:
    """A host's socket list; `path@TIME` gives the time it was taken. ValueError (one line,
    naming the file) for a file that is not such a list, or a time that is not one."""
    name, at = ss_file(path), None
    if name != path:
        when = path[len(name) + 1:]
        try:
            at = _time(when)
        except ValueError:
            raise ValueError(f"{path}: {when!r} is not a time (seconds since 1970, or an "
                             "ISO 8601 date)") from None
    try:
        with open(name, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ValueError(f"{name}: {e.strerror}") from None
    view, host, header = HostView(name, at), None, False
    for line in lines:
        m = re.match(r"#\s*(taken at|netns=|host=)\s*(\S+)", line)
        if m and m.group(1) == "taken at" and view.taken_at is None:
            try:
                view.taken_at = _time(m.group(2))
            except ValueError:
                raise ValueError(f"{name}: {line.strip()!r}: not a time") from None
        elif m:
            host = m.group(2)
        fields = line.split()
        header |= bool(fields) and fields[0] in ("State", "Proto", "Netid")
        view.processes |= "users:(" in line or "PID/Program name" in line
        if fields[:1] in (["tcp"], ["tcp6"]):  # netstat: tcp 0 0 L P STATE p/n
            fields = [*fields[5:6], *fields[1:5], *fields[6:]]
        if len(fields) < 5 or fields[0] not in _NAMES:
            continue
        local, peer = _address(fields[3]), _address(fields[4])
        if local is None or peer is None:
            continue
        rest = " ".join(fields[5:])
        proc = _SS_PROCESS.search(rest) or _NETSTAT_PROCESS.match(rest)
        process = f"{proc['name']} (pid {proc['pid']})" if proc else None
        view.sockets.append(Socket(_NAMES[fields[0]], local, peer, process, host))
    if not view.sockets and not header:
        raise ValueError(f"{name}: not the output of ss -tanp or netstat -tanp")
    return view


#: Why a list that names processes names none for a socket, by its state.
_ORPHANED = "no process (orphaned: its process closed it, or exited)"
_NO_PROCESS = {
    State.TIME_WAIT: "no process (TIME_WAIT: the kernel's alone)",
    State.SYN_RCVD: "no process (a handshake not yet accepted)",
    State.FIN_WAIT_1: _ORPHANED, State.FIN_WAIT_2: _ORPHANED, State.CLOSING: _ORPHANED,
    State.LAST_ACK: _ORPHANED,
}


def _no_process(state: State, listed: bool) -> str:
    """Who holds a socket its line names no process for: unknown when the list names
    none at all (`listed` false: ss or netstat run without -p)."""
    if not listed:
        return "an unknown process (the list names none: ss or netstat was run without -p)"
    return _NO_PROCESS.get(state, "no process listed (not yet accepted, or another user's: "
                                  "ss -p names those only to root)")


def state_at(record: dict[str, Any], role: str, ts: float | None) -> State | None:
    """Endpoint `role`'s state at `ts` (at the end for None) by its record's transitions;
    None before the capture saw it."""
    if ts is None:
        return State(record["endpoints"][role]["final_state"])
    now = None
    for t in record["endpoints"][role]["transitions"]:
        if t["ts"] > ts:
            break
        now = State(t["state"])
    return now


class HostJoin:
    """Joins host views to the connections' records (`take` each, as analyze hands them
    out), then says how they compare (`to_json`)."""

    def __init__(self, views: list[HostView]) -> None:
        self.views = views
        self.wanted: dict[tuple[str, str], list[tuple[int, Socket]]] = {}
        for v, view in enumerate(views):
            for sock in view.sockets:
                self.wanted.setdefault((sock.local, sock.peer), []).append((v, sock))
        # (view, socket) -> the capture's state then, from the latest instance of the
        # 4-tuple that had begun by then
        self.found: dict[tuple[int, Socket], tuple[float, State | None, int]] = {}

    def take(self, record: dict[str, Any]) -> None:
        for role, local, peer in (("client", record["client"], record["server"]),
                                  ("server", record["server"], record["client"])):
            for v, sock in self.wanted.get((local, peer), ()):
                at = self.views[v].taken_at
                if at is not None and record["first_ts"] > at:
                    continue  # a later connection on the 4-tuple
                old = self.found.get((v, sock))
                if old is None or record["first_ts"] >= old[0]:
                    self.found[v, sock] = (record["first_ts"], state_at(record, role, at),
                                           record["id"])

    def warnings(self, capture: dict[str, Any]) -> list[str]:
        """A warning for each list taken outside the capture (`capture`: the result's,
        from `first_ts` to `end_ts`): what the capture shows of its sockets is then not
        what the host saw, and the comparison cannot be trusted."""
        out = []
        first, end = capture["first_ts"], capture["end_ts"]
        for view in self.views:
            at = view.taken_at
            if at is None or first is None or first <= at <= end:
                continue
            gap, edge = (first - at, "before the capture's first packet") if at < first \
                else (at - end, "after the capture ended")
            out.append(f"--ss {view.path}: taken at {when(at)}, {seconds(gap)} {edge} "
                       f"({when(first if at < first else end)}): the capture does not show "
                       "its sockets then, so its comparison with the capture cannot be "
                       "trusted (is its time, or the host's clock, right?)")
        return out

    def to_json(self, result: dict[str, Any]) -> list[dict[str, Any]]:
        services = {f["service"] for f in result["findings"]} | {
            d["service"] for d in result.get("diagnoses", [])}
        out = []
        for v, view in enumerate(self.views):
            agree, disagree, missing = 0, [], 0
            for sock in view.sockets:
                got = self.found.get((v, sock))
                if got is None or got[1] is None:
                    missing += 1
                elif got[1] == sock.state:
                    agree += 1
                else:
                    disagree.append({"local": sock.local, "peer": sock.peer,
                                     "host": sock.state.value, "pcapstate": got[1].value,
                                     "conn_id": got[2]})
            held: Counter[tuple[str, str, str]] = Counter(
                (s.local, s.state.value, s.process or _no_process(s.state, view.processes))
                for s in view.sockets if s.local in services)
            out.append({
                "path": view.path, "taken_at": view.taken_at,
                "compared_at": "taken_at" if view.taken_at is not None else "capture end",
                "sockets": len(view.sockets), "in_capture": len(view.sockets) - missing,
                "agree": agree, "disagree": len(disagree),
                "disagreements": disagree[:_DISAGREE_SHOWN],
                "held_by": [{"service": svc, "state": st, "process": proc, "sockets": n}
                            for (svc, st, proc), n in sorted(held.items(),
                                                              key=lambda kv: -kv[1])]})
        return out
