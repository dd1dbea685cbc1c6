"""Retired connections as data people read: the connection record of the JSON result and
the JSON Lines stream, the brief the corpus check compares, and what a conn.log needs; each
built in bulk from the packed records the tracker hands out (track/slots.py), in one place.
"""

import json
from collections.abc import Sequence
from functools import lru_cache
from ipaddress import ip_address
from typing import Any, NamedTuple

import numpy as np
import orjson

from pcapstate import collector, jit
from pcapstate.derive.texts import (
    Part,
    Texts,
    gather,
    in_stead,
    json_columns,
    json_texts,
    words,
)
from pcapstate.track import zeek_view
from pcapstate.track.slots import (
    ANOMALY_NAMES,
    CLOSER_NAMES,
    END_NAMES,
    EVIDENCE_NAMES,
    INFERRED_MOVE,
    ROLE_NAMES,
    STATE_NAMES,
    STATES,
)
from pcapstate.track.zeek_view import CONN_STATES, ZEEK_HISTORY
from pcapstate.vocab import WIRESHARK_ANALYSIS, Closer, CloserEvidence, Roles, State

ROLES = ("client", "server")

#: A connection in brief (what `on_brief` receives, a list of these lists at a time): what
#: names it and how it ended, for the corpus check, without building the whole record.
BRIEF_FIELDS = ("client", "server", "first_ts", "end", "closer", "client_state",
                "server_state")


@lru_cache(maxsize=65536)
def _host(v6: int, hi: int, lo: int) -> str:
    if v6:
        return f"[{ip_address(hi.to_bytes(8, 'big') + lo.to_bytes(8, 'big'))}]"
    return str(ip_address(lo.to_bytes(4, "big")))


def address(row: np.void, e: int) -> str:
    """Endpoint e's ip:port ([ip]:port for IPv6, compressed)."""
    return _host(int(row["v6"]), int(row["ip_hi"][e]), int(row["ip_lo"][e])) \
        + f":{int(row['port'][e])}"


class _Ends(NamedTuple):
    """A batch's endpoints: `hosts`, each distinct host as `address` writes it; `host`,
    each endpoint's there ([row, endpoint]); `ports` ([row, endpoint])."""

    hosts: list[str]
    host: np.ndarray
    ports: np.ndarray

    def host_names(self) -> np.ndarray:
        """Each endpoint's host ([row, endpoint], objects)."""
        return np.array(self.hosts, object)[self.host]


def _endpoints(rows: np.ndarray) -> _Ends:
    """Each row's client and server hosts and ports, read in bulk: each distinct IPv4 host
    formatted once."""
    v6 = np.repeat(rows["v6"] != 0, 2)
    lo = rows["ip_lo"].reshape(-1)
    distinct, at = np.unique(lo[~v6], return_inverse=True)
    hosts = [_host(0, 0, o) for o in distinct.tolist()]
    host = np.empty(len(lo), np.intp)
    host[~v6] = at
    host[v6] = np.arange(len(hosts), len(hosts) + int(v6.sum()))
    hosts += [_host(1, h, o) for h, o in zip(rows["ip_hi"].reshape(-1)[v6].tolist(),
                                             lo[v6].tolist(), strict=True)]
    return _Ends(hosts, host.reshape(-1, 2), rows["port"].astype(np.int64))


def _port_table(ends: _Ends) -> tuple[list[str], np.ndarray]:
    """Each distinct port's text after its host, and each endpoint's there."""
    distinct, at = np.unique(ends.ports, return_inverse=True)
    return [f":{p}" for p in distinct.tolist()], at.reshape(-1, 2)


def _addresses(ends: _Ends) -> np.ndarray:
    """Each row's client and server addresses ([row, endpoint], as `address` writes them),
    each distinct port formatted once."""
    ports, at = _port_table(ends)
    return ends.host_names() + np.array(ports, object)[at]


def _address_texts(ends: _Ends) -> list[Texts]:
    """The client's and the server's addresses (_addresses) as Texts, a row each."""
    hosts, (ports, at) = words(ends.hosts), _port_table(ends)
    ports_texts = words(ports)
    return [gather([(hosts, ends.host[:, e]), (ports_texts, at[:, e])], len(at))
            for e in range(2)]


def tunnel_name(tunnel: dict[str, Any]) -> str:
    """A tunnel in words: "vxlan 42 192.0.2.1-192.0.2.2" (kind, id, outer endpoints), and
    the one it is inside after "in"."""
    ident = "" if tunnel["id"] is None else f" {tunnel['id']}"
    inside = f" in {tunnel_name(tunnel['parent'])}" if tunnel["parent"] else ""
    return f"{tunnel['kind']}{ident} {'-'.join(tunnel['endpoints'])}{inside}"


def transitions(row: np.void, e: int) -> list[tuple[float, State, bool]]:
    """Endpoint e's transitions: (time, state entered, entered by a timer)."""
    k = int(row["ntr"][e])
    return [(t, STATES[s], timer == 1) for t, s, timer in zip(
        row["tr_ts"][e, :k].tolist(), row["tr_st"][e, :k].tolist(),
        row["tr_timer"][e, :k].tolist(), strict=True)]


@collector.paused()  # thousands of dicts and lists, no cycles: pcapstate/collector.py
def briefs(rows: np.ndarray, kinds: np.ndarray, closers: np.ndarray) -> list[list[Any]]:
    """The connections in brief (BRIEF_FIELDS)."""
    states = rows["st"].tolist()
    return [[a, b, t, END_NAMES[k], CLOSER_NAMES[c], STATES[st[0]].value, STATES[st[1]].value]
            for (a, b), st, t, k, c in zip(_addresses(_endpoints(rows)).tolist(), states,
                                           rows["first_ts"].tolist(), kinds.tolist(),
                                           closers.tolist(), strict=True)]


def columns(rows: np.ndarray, kinds: np.ndarray, closers: np.ndarray, aborted: np.ndarray,
            evidences: np.ndarray, wireshark: bool = False,
            tunnels: Sequence[dict[str, Any]] = (),
            picks: np.ndarray | None = None) -> dict[str, Any]:
    """The fields of each connection's record, a column each (numpy arrays, None where a
    record has null; a name of the vocabulary's by its code: Coded; the addresses, "client"
    and "server", as Texts lying one after another), worked out once for the JSON records
    and the Parquet file (render/parquet.py). `aborted`, `evidences`:
    derive/fold.py's (the closer closed by a RST; how the closer is known). Per endpoint
    ("client_" and "server_" prefixes): final_state, packets, payload_bytes, syn, fin, rst.
    The transitions made, endpoint after endpoint: "moves_ts", "moves_state_code" (the
    state's code in STATE_NAMES), "moves_timer", "moves_inferred"; each endpoint's first at
    "moves_start" [row, endpoint], "ntr" [row, endpoint] of them.
    "anomalies": the counts, a column for each of "anomaly_names"; "wireshark": those of
    Wireshark's analysis flags (vocab.WIRESHARK_ANALYSIS) when the tshark engine counted
    them (`wireshark`), else None; "tunnel": the number of the tunnel the connection came in
    (1 on), or 0, and "tunnel_name" its name (tunnel_name of `tunnels`, by number - 1) or
    None; with the diagnoses' rules' bits (`picks`, derive/rules.py pick), "signs": the
    diagnoses each connection shows a sign of (rules.SIGNS), a list each."""
    names = _NAMES
    client, server = _address_texts(_endpoints(rows))
    closed_by = aborted.astype(np.intp)  # fin, rst, or -1: None
    closed_by[(closers == _CLOSER_NONE) | (evidences == _INFERRED)] = -1
    # the transitions made (not the unused places), and where each endpoint's begin
    made = np.arange(rows.dtype["tr_ts"].shape[1]) < rows["ntr"][:, :, None]
    ntr = rows["ntr"].astype(np.int64)
    starts = (np.cumsum(ntr) - ntr.reshape(-1)).reshape(-1, 2)
    timer = rows["tr_timer"][made]
    inferred = timer == INFERRED_MOVE  # and the first move of a connection found inferred
    inferred[starts[(rows["inferred"] != 0)[:, None] & (ntr > 0)]] = True
    codes = rows["tr_st"][made].astype(np.intp)  # each move's state (in STATE_NAMES)
    out = {
        "id": rows["cid"], "client": client, "server": server,
        "roles_from": Coded(rows["roles"], names["roles"]),
        "mid_stream": rows["roles"] != _BY_SYN, "first_ts": rows["first_ts"],
        "last_ts": rows["last_ts"], "end": Coded(kinds, names["end"]),
        "closer": Coded(closers, names["closer"]),
        "closer_evidence": Coded(evidences, names["evidence"]),  # -1: not known (None)
        "closed_by": Coded(closed_by, names["closed_by"]),
        "reset_by": Coded(rows["reset_by"], names["role"]),
        "anomalies": rows["anom"][:, _BY_NAME], "anomaly_names": names["anomalies"],
        "evicted": rows["evicted"] != 0, "tunnel": rows["tunnel"],
        "moves_ts": rows["tr_ts"][made], "moves_state_code": codes,
        "moves_timer": timer == 1, "moves_inferred": inferred, "moves_start": starts,
        "ntr": ntr, "wireshark": rows["ws"] if wireshark else None,
        "tunnel_name": np.full(len(rows), None, object)}
    tunneled = np.flatnonzero(rows["tunnel"])  # named only where there is one
    out["tunnel_name"][tunneled] = [tunnel_name(tunnels[t - 1])
                                    for t in rows["tunnel"][tunneled].tolist()]
    if picks is not None:
        from pcapstate.derive.rules import SIGNS  # which imports this module's verdicts

        out["signs"] = [[] for _ in range(len(rows))]
        for name, bits in SIGNS:
            for i in np.flatnonzero(picks & bits).tolist():
                out["signs"][i].append(name)
    for e, role in enumerate(ROLES):
        out[f"{role}_final_state"] = Coded(rows["st"][:, e], names["state"])
        for field, column in _COUNTS:
            out[f"{role}_{field}"] = rows[column][:, e]
    return out


def lines(cols: dict[str, Any], views: "ZeekViews", zeek: Texts,
          tunnels: Sequence[dict[str, Any]] = (), end: str = "\n") -> memoryview:
    """Each connection's record, as written to the JSON result and the JSON Lines stream
    (docs/json.md), a line each (UTF-8) that ends with `end` ("\n" in JSON Lines, ",\n"
    in the result's array: render/output.py SEPARATOR), from its columns (columns): the one place a
    record's layout is written. Made as orjson writes the record's dict (the same bytes),
    but a column at a time: a value's text is orjson's, its key's too, and compiled code
    puts the lines together from those (texts.gather), with no object built for each
    record. `views`, `zeek`: the Zeek views of the same rows (zeek_views) and their texts
    (zeek_texts); `tunnels`: the tunnels met (decode/unwrap.py), by number - 1."""
    n = len(cols["id"])
    if not n:
        return memoryview(b"")
    moves, rows = _transitions(cols), np.arange(n) * 2
    fields = [*_PLAIN, *(f"{role}_{name}" for role in ROLES for name in _ENDPOINT), "evicted"]
    plain = [k for k in fields if isinstance(cols[k], np.ndarray)]
    texts: dict[str, Part | list[Part]] = dict(zip(plain, json_columns(
        [cols[k] for k in plain]), strict=True))
    texts |= {k: (_json_names(tuple(cols[k].names)), cols[k].codes) for k in fields
              if isinstance(cols[k], Coded)}
    texts |= {k: _quoted(cols[k]) for k in fields if isinstance(cols[k], Texts)}
    endpoints = [_object([*((name, texts[f"{role}_{name}"]) for name in _ENDPOINT),
                          ("transitions", ["[", (moves, rows + e), "]"])])
                 for e, role in enumerate(ROLES)]
    tunnel = _optional(n, "tunnel", {i: _json(tunnels[t - 1]) for i, t in zip(
        np.flatnonzero(cols["tunnel"]).tolist(), cols["tunnel"][cols["tunnel"] != 0].tolist(),
        strict=True)})
    ws = [] if cols["wireshark"] is None else \
        [("wireshark_analysis", _maps(cols["wireshark"], list(WIRESHARK_ANALYSIS)))]
    later: Part = ""
    if views.later:
        strings = zeek.strings()
        later = _optional(n, "zeek_later", {i: "[" + ",".join(strings[k] for k in others) + "]"
                                            for i, others in views.later.items()})
    record = _object([
        *((k, texts[k]) for k in _PLAIN),
        ("endpoints", _object(list(zip(ROLES, endpoints, strict=True)))),
        ("anomalies", _maps(cols["anomalies"], cols["anomaly_names"])),
        ("evicted", texts["evicted"]), (None, tunnel), *ws,
        ("zeek", (zeek, views.first)), (None, later)])
    return gather([*record, end], n).data.data  # the array's buffer, not copied to a bytes


@collector.paused()  # thousands of dicts and lists, no cycles: pcapstate/collector.py
def parse(text: bytes | memoryview, end: str = "\n") -> list[dict[str, Any]]:
    """The records of `text`, lines that each end with `end` (lines), as dicts: what
    `on_record` receives."""
    if not text:
        return []
    body = bytes(text[:len(text) - len(end)])
    if end.strip() != ",":  # else the records are an array's inside as they are
        body = body.replace(end.encode(), b",")  # a record holds no raw newline
    return orjson.loads(b"[" + body + b"]")


class Coded(NamedTuple):
    """A column of names by their codes: `names[codes]` (names: an object array, None at its
    end, which a code of -1 stands for)."""

    codes: np.ndarray
    names: np.ndarray


@lru_cache(maxsize=64)
def _json_names(names: tuple[Any, ...]) -> Texts:
    """The JSON texts of a Coded column's names."""
    return words([_json(name) for name in names])


def _json(value: Any) -> str:
    """`value` as orjson writes it."""
    return orjson.dumps(value).decode()


def _object(members: Sequence[tuple[str | None, Part | list[Part]]]) -> list[Part]:
    """The parts of a JSON object of (key, value) `members`, in their order (a value of
    several parts a list); a member with key None is a part as it is (one that may be
    absent: _optional), never first."""
    out: list[Part] = []
    for key, value in members:
        if key is not None:
            out += ["," if out else "{", _json(key) + ":"]
        out += value if isinstance(value, list) else [value]
    return [*out, "}"]


def _quoted(texts: Texts) -> list[Part]:
    """A column of Texts that hold nothing JSON escapes (addresses, Zeek's history letters)
    as JSON strings: quoted as they are."""
    return ['"', texts, '"']


def _optional(n: int, key: str, texts: dict[int, str]) -> Part:
    """A member `key` of n objects that only the rows of `texts` have (row: its value's
    text), with its comma, and nothing on the others (a part of _object, key None)."""
    head = "," + _json(key) + ":"
    at = np.zeros(n, np.int64)
    at[list(texts)] = np.arange(1, len(texts) + 1)
    return words(["", *(head + text for text in texts.values())]), at


def _transitions(cols: dict[str, Any]) -> Texts:
    """Each endpoint's transitions, row after row and endpoint after endpoint: the texts of
    their JSON objects with commas between (_MOVE_START, _MOVE_ENDS)."""
    ntr = cols["ntr"].reshape(-1)
    bounds = np.zeros(len(ntr) + 1, np.int64)
    np.cumsum(ntr, out=bounds[1:])
    made = len(cols["moves_ts"])
    last = np.zeros(made, np.intp)
    last[(cols["moves_start"] + cols["ntr"] - 1)[cols["ntr"] > 0]] = 1
    ends = ((cols["moves_state_code"] * 2 + cols["moves_timer"]) * 2
            + cols["moves_inferred"]) * 2 + last
    return gather([_MOVE_START, json_texts(cols["moves_ts"]), (_MOVE_ENDS, ends)], made,
                  bounds)


def _maps(counts: np.ndarray, names: Sequence[str]) -> list[Part]:
    """Each row of `counts` (a column per name) as the text of a JSON object of name to
    count, counts of 0 left out, in the names' order."""
    rows, at = np.nonzero(counts)
    bounds = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=len(counts)), out=bounds[1:])
    later = np.ones(len(rows), np.intp)  # a row's count after its first: a comma before
    later[bounds[:-1][bounds[:-1] < bounds[1:]]] = 0
    keys = words([_json(name) + ":" for name in names])
    return ["{", gather([(_COMMA, later), (keys, at), json_texts(counts[rows, at])], len(rows),
                        bounds), "}"]


#: A record's fields of one value each, in its order, up to its endpoints
_PLAIN = ("id", "client", "server", "roles_from", "mid_stream", "first_ts", "last_ts", "end",
          "closer", "closer_evidence", "closed_by", "reset_by")
#: An endpoint's counts: its record's name, the packed record's column
_COUNTS = (("packets", "packets"), ("payload_bytes", "payload"), ("syn", "syns"),
           ("fin", "fins"), ("rst", "rsts"))
#: An endpoint's fields of one value each, in its order, up to its transitions
_ENDPOINT = ("final_state", *(name for name, _ in _COUNTS))
_BY_NAME = sorted(range(len(ANOMALY_NAMES)), key=lambda a: ANOMALY_NAMES[a])
_CLOSER_NONE = CLOSER_NAMES.index(Closer.NONE)
_INFERRED = EVIDENCE_NAMES.index(CloserEvidence.INFERRED)
_BY_SYN = ROLE_NAMES.index(Roles.SYN)


def _table(names: Sequence[Any]) -> np.ndarray:
    return np.array([*names, None], object)


#: The vocabulary's names as object arrays a column of codes indexes (-1: the None at the
#: end); "role": client or server (ROLES)
_NAMES = {"closer": _table(CLOSER_NAMES), "evidence": _table(EVIDENCE_NAMES),
          "end": _table(END_NAMES), "state": _table(STATE_NAMES),
          "roles": _table([r.value for r in ROLE_NAMES]), "role": _table(ROLES),
          "closed_by": _table(("fin", "rst")),
          "anomalies": np.array([ANOMALY_NAMES[a] for a in _BY_NAME], object)}

#: A transition's JSON text (ts, state, and timer and inferred only when true) is
#: _MOVE_START, its time's text, then one of _MOVE_ENDS, by ((state (STATE_NAMES) * 2 +
#: timer) * 2 + inferred) * 2 + last: its state and flags, and a comma unless it is its
#: endpoint's last
_MOVE_START = "{" + _json("ts") + ":"
_MOVE_ENDS = words([f",{_json('state')}:{_json(state)}{timer}{inferred}}}{end}"
                    for state in STATE_NAMES
                    for timer in ("", f",{_json('timer')}:{_json(True)}")
                    for inferred in ("", f",{_json('inferred')}:{_json(True)}")
                    for end in (",", "")])
_COMMA = words(["", ","])


def conn_entries(rows: np.ndarray, views: "ZeekViews",
                 tunnels: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """What a Zeek conn.log needs of a batch of connections (render/zeeklog.py): an entry
    for each of their Zeek views (`views`: zeek_views of the same rows), each row's first
    and then those Zeek began after it on the row's 4-tuple (as its record's `zeek` and
    `zeek_later`), a column each: the view's fields (views_columns: ZEEK_FIELDS and
    "timed"), "client" and "server" (the row's addresses), "orig_h", "orig_p", "resp_h",
    "resp_p" (the originator's and the responder's host, IPv6's without brackets, and port)
    and "tunnel" (the tunnel the row came in, as JSON text with its keys sorted, or None;
    `tunnels`: those met, by number - 1)."""
    owner = np.arange(len(rows))  # each entry's row
    order = views.first
    if views.later:
        pairs = [(i, k) for i, first in enumerate(views.first.tolist())
                 for k in (first, *views.later.get(i, ()))]
        owner, order = (np.array(c, np.intp) for c in zip(*pairs, strict=True))
    out = {k: np.array(v[order].strings(), object) if isinstance(v, Texts) else v[order]
           for k, v in views.columns.items()}
    ends = _endpoints(rows)
    addresses = _addresses(ends)[owner]
    out["client"], out["server"] = addresses[:, 0], addresses[:, 1]
    hosts, ports = ends.host_names()[owner], ends.ports[owner]
    v6 = np.repeat(rows["v6"][owner] != 0, 2).reshape(-1, 2)
    hosts[v6] = [h[1:-1] for h in hosts[v6].tolist()]
    at, orig = np.arange(len(owner)), (out["orig"] == "server").astype(np.intp)
    out["orig_h"], out["orig_p"] = hosts[at, orig], ports[at, orig]
    out["resp_h"], out["resp_p"] = hosts[at, 1 - orig], ports[at, 1 - orig]
    numbers = rows["tunnel"][owner]
    out["tunnel"] = np.full(len(owner), None, object)
    for t in np.unique(numbers[numbers != 0]).tolist():
        out["tunnel"][numbers == t] = json.dumps(tunnels[t - 1], sort_keys=True)
    return out


class ZeekViews(NamedTuple):
    """The Zeek views of a batch of connections: `columns` of every view (views_columns),
    the rows' own first, then those Zeek ended early while a row went on; `first`, each
    row's first view there; `later`, the indexes there of the views Zeek began after it
    on the row's 4-tuple, for each row that has any (an empty dict when none has)."""

    columns: dict[str, Any]
    first: np.ndarray
    later: dict[int, list[int]]


def zeek_views(rows: np.ndarray, views: np.ndarray,
               ended: dict[int, list[np.void]]) -> ZeekViews:
    """The connection Zeek saw begin with each row (`views`, track/zeek_view.py VIEW), and,
    only when Zeek ended it and began others on the 4-tuple while this one went on
    (`ended`, by connection id), those."""
    first = np.arange(len(rows))
    later: dict[int, list[int]] = {}
    if not ended:
        return ZeekViews(views_columns(views), first, later)
    extra: list[np.void] = []
    for i, cid in enumerate(rows["cid"].tolist()):
        earlier = ended.get(cid)
        if earlier:
            at = len(rows) + len(extra)  # the row's first view, then those after it
            first[i], later[i] = at, [*range(at + 1, at + len(earlier)), i]
            extra += earlier
    if not extra:
        return ZeekViews(views_columns(views), first, later)
    both = np.concatenate([views, jit.records(np.array(extra, views.dtype))])
    return ZeekViews(views_columns(both), first, later)


def zeek_texts(views: ZeekViews) -> Texts:
    """The text of each view's JSON object (the record's `zeek`, its conn.log fields,
    ZEEK_FIELDS, ZEEK_TIMED null when not timed), as orjson writes it: the one place its
    layout is written."""
    cols = views.columns
    plain = [k for k in ZEEK_FIELDS if not isinstance(cols[k], Texts)]
    *texts, null = json_columns([*(cols[k] for k in plain), [None]])
    values: dict[str, Part | list[Part]] = {
        k: in_stead(t, ~cols["timed"], null) if k in ZEEK_TIMED else t
        for k, t in zip(plain, texts, strict=True)}
    values |= {k: _quoted(cols[k]) for k in ZEEK_FIELDS if isinstance(cols[k], Texts)}
    return gather(_object([(k, values[k]) for k in ZEEK_FIELDS]), len(cols["timed"]))


def zeek_columns(views: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each Zeek view's conn_state (its code in CONN_STATES) and its endpoints' sizes."""
    states, sizes = np.empty(len(views), np.int8), np.empty((len(views), 2), np.int64)
    zeek_view.columns(views, states, sizes)
    return states, sizes


#: A Zeek view's conn.log fields, in their order (views_columns)
ZEEK_FIELDS = ("ts", "orig", "conn_state", "history", "missed_bytes", "duration",
               "orig_bytes", "resp_bytes", "orig_pkts", "orig_ip_bytes", "resp_pkts",
               "resp_ip_bytes")
#: Those unset (null) when the duration is 0, as Zeek logs them
ZEEK_TIMED = ("duration", "orig_bytes", "resp_bytes")


def views_columns(rows: np.ndarray) -> dict[str, Any]:
    """The conn.log fields (ZEEK_FIELDS) of each Zeek view (track/zeek_view.py VIEW), a
    column each, and "timed": whether its duration is over 0 (ZEEK_TIMED are set only
    then). "history" is Texts, one after another from the start of their buffer: Zeek's
    letters (and "^"), which JSON writes as they are, never a Python string each."""
    states, sizes = zeek_columns(rows)
    at, orig = np.arange(len(rows)), rows["z_orig"].astype(np.intp)
    resp = 1 - orig
    duration = rows["z_last_ts"] - rows["z_first"]
    hlen = rows["z_hlen"].astype(np.int64)
    stop = np.cumsum(hlen)
    pkts, ipb = rows["z_pkts"], rows["z_ipb"]
    return {
        "ts": rows["z_first"], "orig": _NAMES["role"][orig],
        "conn_state": np.array(CONN_STATES, object)[states],
        "history": Texts(rows["z_hist"][np.arange(ZEEK_HISTORY) < hlen[:, None]], stop - hlen,
                         stop),
        "missed_bytes": rows["z_missed"], "duration": duration,
        "orig_bytes": sizes[at, orig], "resp_bytes": sizes[at, resp],
        "orig_pkts": pkts[at, orig], "orig_ip_bytes": ipb[at, orig],
        "resp_pkts": pkts[at, resp], "resp_ip_bytes": ipb[at, resp], "timed": duration > 0}
