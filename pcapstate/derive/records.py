"""Retired connections as data people read: the connection record of the JSON result and
the JSON Lines stream, the brief the corpus check compares, and what a conn.log needs; each
built in bulk from the packed records the tracker hands out (track/slots.py), in one place.
"""

import hashlib
import json
from collections.abc import Callable, Sequence
from functools import lru_cache, partial
from ipaddress import ip_address
from typing import Any, NamedTuple

import numpy as np
import orjson

from pcapstate import collector, jit
from pcapstate.derive.texts import (
    Texts,
    _index,
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
from pcapstate.track.zeek_view import CONN_STATES
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


def _addresses(ends: _Ends) -> np.ndarray:
    """Each row's client and server addresses ([row, endpoint], as `address` writes them),
    each distinct port formatted once."""
    distinct, at = np.unique(ends.ports, return_inverse=True)
    ports = np.array([f":{p}" for p in distinct.tolist()], object)
    return ends.host_names() + ports[at.reshape(-1, 2)]


def address_texts(ends: _Ends) -> list[Texts]:
    """The client's and the server's addresses (as _addresses writes them) as Texts, a row
    each, laid one after another (what a Parquet string column is made of), written by
    compiled code from the hosts' texts and the ports' numbers."""
    hosts = words(ends.hosts)
    return [Texts(*_address_texts(hosts.data, hosts.start, hosts.stop,
                                  ends.host[:, e].astype(np.int64), ends.ports[:, e]))
            for e in range(2)]


@jit.njit(cache=True, nogil=True)
def _address_texts(data, start, stop, host, port):  # type: ignore[no-untyped-def]
    """Each row's host's text (`host`: its number in data, start, stop), ":" and its port."""
    size = 0
    for r in range(len(host)):
        size += stop[host[r]] - start[host[r]] + 6  # ":" and at most 5 digits
    out = np.empty(size, np.uint8)
    starts, stops = np.empty(len(host), np.int64), np.empty(len(host), np.int64)
    to = np.int64(0)
    for r in range(len(host)):
        starts[r] = to
        to = _put(out, to, data, start, stop, host[r])
        out[to] = _COLON
        to = _put_int(out, to + 1, port[r])
        stops[r] = to
    return out[:to], starts, stops


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
    record has null; a name of the vocabulary's by its code: Coded; the addresses' parts,
    "ends": _Ends, which address_texts makes texts of), worked out once for the JSON
    records and the Parquet file (render/parquet.py). `aborted`, `evidences`:
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
    diagnoses each connection shows a sign of (rules.SIGNS), a list each. The numbers are
    also there as blocks, for _write (_fields'): "ints", "codes", "flags", "times"."""
    n = len(rows)
    ints = np.empty((n, 1 + 2 * len(_COUNTS)), np.int64)
    codes = np.empty((n, len(_CODED)), np.int64)
    flags, times = np.empty((n, 2), np.bool_), np.empty((n, 2), np.float64)
    anomalies = np.empty((n, len(_BY_NAME)), np.int64)
    _fields(rows, kinds, closers, aborted, evidences, _BY_NAME, ints, codes, flags, times,
            anomalies)
    ntr = rows["ntr"].astype(np.int64)
    moves_ts, states, timer, inferred, starts = _moves(ntr, rows["tr_ts"], rows["tr_st"],
                                                       rows["tr_timer"], rows["inferred"])
    out = {
        "id": ints[:, 0], "ends": _endpoints(rows), "mid_stream": flags[:, 0],
        "first_ts": times[:, 0], "last_ts": times[:, 1],
        "anomalies": anomalies, "anomaly_names": _NAMES["anomalies"], "evicted": flags[:, 1],
        "tunnel": rows["tunnel"], "moves_ts": moves_ts, "moves_state_code": states,
        "moves_timer": timer, "moves_inferred": inferred, "moves_start": starts,
        "ntr": ntr, "wireshark": rows["ws"] if wireshark else None,
        "tunnel_name": np.full(n, None, object), "ints": ints, "codes": codes,
        "flags": flags, "times": times}
    for k, (name, table) in enumerate(_CODED):
        out[name] = Coded(codes[:, k], _NAMES[table])
    for e, role in enumerate(ROLES):
        for k, field in enumerate(_COUNTS):
            out[f"{role}_{field}"] = ints[:, 1 + len(_COUNTS) * e + k]
    tunneled = np.flatnonzero(rows["tunnel"])  # named only where there is one
    out["tunnel_name"][tunneled] = [tunnel_name(tunnels[t - 1])
                                    for t in rows["tunnel"][tunneled].tolist()]
    if picks is not None:
        from pcapstate.derive.rules import SIGNS  # which imports this module's verdicts

        out["signs"] = [[] for _ in range(n)]
        for name, bits in SIGNS:
            for i in np.flatnonzero(picks & bits).tolist():
                out["signs"][i].append(name)
    return out


@jit.njit(cache=True, nogil=True)
def _fields(rows, kinds, closers, aborted, evidences, by_name, ints, codes, flags, times,
            anomalies):  # type: ignore[no-untyped-def]
    """The records' fields read from the packed rows in one pass (numpy's gathers of them,
    a column at a time, took a third of the records' making): `ints`, the id and each
    endpoint's counts (in _COUNTS' order); `codes`, the Coded columns' codes (_CODED's
    order; -1: None); `flags`, mid_stream and evicted; `times`, first_ts and last_ts;
    `anomalies`, the counts in their names' order (`by_name`)."""
    for r in range(len(rows)):
        row = rows[r]
        ints[r, 0] = row.cid
        for e in range(2):
            at = 1 + 5 * e
            ints[r, at], ints[r, at + 1], ints[r, at + 2] = row.packets[e], row.payload[e], \
                row.syns[e]
            ints[r, at + 3], ints[r, at + 4] = row.fins[e], row.rsts[e]
        codes[r, 0], codes[r, 1], codes[r, 2] = row.roles, kinds[r], closers[r]
        codes[r, 3] = evidences[r]
        # closed by a FIN (0) or a RST (1) as derive/fold.py found; unknown (None) when no
        # one closed or the closer is only inferred
        codes[r, 4] = -1 if closers[r] == _CLOSER_NONE or evidences[r] == _INFERRED \
            else np.int64(aborted[r])
        codes[r, 5], codes[r, 6], codes[r, 7] = row.reset_by, row.st[0], row.st[1]
        flags[r, 0], flags[r, 1] = row.roles != _BY_SYN, row.evicted != 0
        times[r, 0], times[r, 1] = row.first_ts, row.last_ts
        for a in range(len(by_name)):
            anomalies[r, a] = row.anom[by_name[a]]


@jit.njit(cache=True, nogil=True)
def _moves(ntr, tr_ts, tr_st, tr_timer, inferred):  # type: ignore[no-untyped-def]
    """The transitions made (ntr [row, endpoint] of each endpoint's places), endpoint after
    endpoint, in one pass (boolean masks of the places took a tenth of the records' making):
    each one's time, state's code (in STATE_NAMES), whether a timer made it, whether it is
    inferred (its tr_timer says so, or it is an endpoint's first in a connection found
    inferred); and where each endpoint's begin [row, endpoint]."""
    n = len(ntr)
    total = 0
    for r in range(n):
        total += ntr[r, 0] + ntr[r, 1]
    ts, codes = np.empty(total, np.float64), np.empty(total, np.intp)
    timer, inferreds = np.empty(total, np.bool_), np.empty(total, np.bool_)
    starts = np.empty((n, 2), np.int64)
    k = 0
    for r in range(n):
        for e in range(2):
            starts[r, e] = k
            for m in range(ntr[r, e]):
                ts[k], codes[k] = tr_ts[r, e, m], tr_st[r, e, m]
                timer[k] = tr_timer[r, e, m] == 1
                inferreds[k] = tr_timer[r, e, m] == INFERRED_MOVE or (m == 0 and inferred[r] != 0)
                k += 1
    return ts, codes, timer, inferreds, starts


def lines(cols: dict[str, Any], views: "ZeekViews", tunnels: Sequence[dict[str, Any]] = (),
          end: str = "\n") -> Callable[[], memoryview]:
    """Each connection's record, as written to the JSON result and the JSON Lines stream
    (docs/json.md), a line each (UTF-8) that ends with `end` ("\n" in JSON Lines, ",\n"
    in the result's array: render/output.py SEPARATOR), from its columns (columns) and
    its Zeek views (`views`: zeek_views of the same rows): the one place a record's layout
    is written (_write, in the order of _KEYS). The same bytes as orjson writes the
    record's dict, made by compiled code from the columns, with no object built for each
    record: numbers written there (times as _micros says, the other floats' texts
    orjson's), every other text taken from one table (_Table). `tunnels`: the tunnels met
    (decode/unwrap.py), by number - 1. Returns the text's making, to call (compiled code
    that lets go of Python's lock: it may run in another thread, render/output.py Behind)."""
    n = len(cols["id"])
    if not n:
        return lambda: memoryview(b"")
    z = views.columns
    t = _Table()
    coded = t.at(_CODED_TEXTS) + _CODED_AT
    times = t.floats(cols["times"])
    moves = t.floats(cols["moves_ts"])
    tunnel = np.full(n, -1, np.int64)  # the tunnel's member of a row in one, its text's
    inside = np.flatnonzero(cols["tunnel"])
    if len(inside):
        numbers = np.unique(cols["tunnel"][inside])
        tunnel[inside] = t.add(words(["," + _json("tunnel") + ":" + _json(tunnels[k - 1])
                                      for k in numbers.tolist()])) \
            + np.searchsorted(numbers, cols["tunnel"][inside])
    ws = cols["wireshark"]
    zeek_times = t.floats(z["times"])
    later = np.zeros(n + 1, np.int64)  # row r's later views: later_views[later[r]:later[r + 1]]
    if views.later:
        counts = np.zeros(n, np.int64)
        counts[list(views.later)] = [len(v) for v in views.later.values()]
        np.cumsum(counts, out=later[1:])
    later_views = np.array([k for v in views.later.values() for k in v], np.int64)  # by row
    places = np.array([t.at(constants) for constants in (
        _KEYS, _NAME_TEXTS, _ANOMALY_KEYS, _WS_KEYS, _MOVE_ENDS, words([end]))], np.int64)
    ends = cols["ends"]
    texts = t.done(words(ends.hosts), z["history"])
    return partial(_text, texts.data, texts.start, texts.stop, places, coded, t.sections,
                   ends.host.astype(np.int64), ends.ports, cols["ints"], cols["codes"],
                   cols["flags"], times, moves, cols["moves_state_code"], cols["moves_timer"],
                   cols["moves_inferred"], cols["moves_start"], cols["ntr"],
                   cols["anomalies"], tunnel,
                   np.zeros((n, 0), np.int64) if ws is None else ws.astype(np.int64),
                   ws is not None, views.first.astype(np.int64), later, later_views,
                   z["ints"], z["codes"], zeek_times, z["timed"])


def _text(*columns: Any) -> memoryview:
    return _write(*columns).data


class _Table:
    """The texts _write copies, in one table: the constant ones (the keys and the other
    pieces of _KEYS, the names' JSON texts, ...), added as asked (`at`: where each begins),
    the floats' texts that orjson writes (those _micros leaves), then the rows' hosts and
    their views' histories (done). An index into the table is a text's number."""

    def __init__(self) -> None:
        self.parts: list[Texts] = []
        self.size = 0
        self.places: dict[int, tuple[Any, int]] = {}  # by id: the texts (kept), where
        self.sections = np.zeros(2, np.int64)  # where the hosts and the histories begin

    def add(self, texts: Texts) -> int:
        self.parts.append(texts)
        self.size += len(texts)
        return self.size - len(texts)

    def at(self, texts: Texts) -> int:
        """Where the texts begin (the same constant Texts once)."""
        if id(texts) not in self.places:
            self.places[id(texts)] = texts, self.add(texts)
        return self.places[id(texts)][1]

    def floats(self, values: np.ndarray) -> np.ndarray:
        """Each value as _write takes it (_put_time): its microseconds (_micros), or where
        it is no whole number of them, -1 - the number of its text as orjson writes it."""
        values = np.ascontiguousarray(values, np.float64)
        micros = _micros(values.reshape(-1))
        odd = np.flatnonzero(micros < 0)
        if len(odd):
            micros[odd] = -1 - self.add(json_texts(values.reshape(-1)[odd])) \
                - np.arange(len(odd))
        return micros.reshape(values.shape)

    def done(self, hosts: Texts, history: Texts) -> Texts:
        """The table, with the rows' hosts and the views' histories at its end (where they
        begin: `sections`)."""
        for k, texts in enumerate((hosts, history)):
            self.sections[k] = self.add(texts)
        datas = {id(p.data): p.data for p in self.parts}
        offsets = dict(zip(datas, np.cumsum([0, *(len(d) for d in datas.values())])[:-1]
                           .tolist(), strict=True))
        return Texts(np.concatenate(list(datas.values())),
                     np.concatenate([p.start + offsets[id(p.data)] for p in self.parts]),
                     np.concatenate([p.stop + offsets[id(p.data)] for p in self.parts]))


def _json(value: Any) -> str:
    """`value` as orjson writes it."""
    return orjson.dumps(value).decode()


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
    """A column of names by their codes: `names[codes]` (names: a 1-d object array, one of
    the modules' own tables; a column that may be None has None at its end, which a code of
    -1 stands for)."""

    codes: np.ndarray
    names: np.ndarray


#: An endpoint's counts, by their records' names (_fields reads them from the packed
#: record's packets, payload, syns, fins, rsts)
_COUNTS = ("packets", "payload_bytes", "syn", "fin", "rst")
_BY_NAME = np.array(sorted(range(len(ANOMALY_NAMES)), key=lambda a: ANOMALY_NAMES[a]))
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
          "conn_state": _table(CONN_STATES),
          "closed_by": _table(("fin", "rst")),
          "anomalies": np.array([ANOMALY_NAMES[a] for a in _BY_NAME], object)}

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
    out = {k: np.array(v[order].strings(), object) if isinstance(v, Texts)
           else v.names[v.codes[order]] if isinstance(v, Coded) else v[order]
           for k, v in views.columns.items() if k in _ENTRY_FIELDS}
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
#: The views' columns a conn.log's entry holds (conn_entries)
_ENTRY_FIELDS = frozenset((*ZEEK_FIELDS, "timed"))

#: The pieces of a record's text between its values, in their order (_write writes the
#: record from them; `K_...` below: each one's place)
_KEYS = words(
    [f"{{{_json('id')}:"]
    + [f",{_json(k)}:" for k in ("client", "server")]  # (quoted: the quotes written apart)
    + [f",{_json(k)}:" for k in ("roles_from", "mid_stream", "first_ts", "last_ts", "end",
                                  "closer", "closer_evidence", "closed_by", "reset_by")]
    + [f",{_json('endpoints')}:{{"]
    + [f"{_json(role)}:{{{_json('final_state')}:" for role in ROLES]
    + [f",{_json(name)}:" for name in _COUNTS]
    + [f",{_json('transitions')}:[", "]}", ",", "}", f",{_json('anomalies')}:{{", "}",
       f",{_json('evicted')}:", f",{_json('wireshark_analysis')}:{{", f",{_json('zeek')}:",
       f",{_json('zeek_later')}:[", "]", '"', f"{{{_json('ts')}:", "null"]
    + [f",{_json(k)}:" for k in ZEEK_FIELDS[1:]])
(K_ID, K_CLIENT, K_SERVER, K_ROLES, K_MID, K_FIRST, K_LAST, K_END, K_CLOSER, K_EVIDENCE,
 K_CLOSED_BY, K_RESET_BY, K_ENDPOINTS, K_CLIENT_STATE, K_SERVER_STATE, K_PACKETS, K_PAYLOAD,
 K_SYN, K_FIN, K_RST, K_TRANSITIONS, K_END_ENDPOINT, K_COMMA, K_CLOSE, K_ANOMALIES,
 K_END_MAP, K_EVICTED, K_WIRESHARK, K_ZEEK, K_LATER, K_END_LATER, K_QUOTE, K_TS, K_NULL,
 K_ORIG, K_CONN_STATE, K_HISTORY, K_MISSED, K_DURATION, K_ORIG_BYTES, K_RESP_BYTES,
 K_ORIG_PKTS, K_ORIG_IP_BYTES, K_RESP_PKTS, K_RESP_IP_BYTES) = range(len(_KEYS))
#: The Coded columns, in codes' order (_fields, _write), with their names' table (_NAMES)
_CODED = (("roles_from", "roles"), ("end", "end"), ("closer", "closer"),
          ("closer_evidence", "evidence"), ("closed_by", "closed_by"), ("reset_by", "role"),
          ("client_final_state", "state"), ("server_final_state", "state"))
#: The JSON texts of the names of each Coded column (_CODED's), then of a Zeek view's orig
#: and conn_state, one table after another; where each table begins, and the last ends
_CODED_TABLES = [_NAMES[table] for table in (*(table for _, table in _CODED), "role",
                                              "conn_state")]
_CODED_TEXTS = words([_json(name) for names in _CODED_TABLES for name in names])
_CODED_AT = np.cumsum([0, *(len(names) for names in _CODED_TABLES)])
#: A view's integers, in zeek_ints' order (_write)
_ZEEK_INTS = ("missed_bytes", "orig_bytes", "resp_bytes", "orig_pkts", "orig_ip_bytes",
              "resp_pkts", "resp_ip_bytes")
#: "false" and "true", by a bool's number
_NAME_TEXTS = words([_json(False), _json(True)])
#: The keys of the anomalies' counts and of Wireshark's flags' (in their columns' order),
#: and a move's text after its time, by ((state (STATE_NAMES) * 2 + timer) * 2 + inferred)
_ANOMALY_KEYS = words([_json(name) + ":" for name in _NAMES["anomalies"]])
_WS_KEYS = words([_json(name) + ":" for name in WIRESHARK_ANALYSIS])
_MOVE_ENDS = words([f",{_json('state')}:{_json(state)}{timer}{inferred}}}"
                    for state in STATE_NAMES
                    for timer in ("", f",{_json('timer')}:{_json(True)}")
                    for inferred in ("", f",{_json('inferred')}:{_json(True)}")])


def views_columns(rows: np.ndarray) -> dict[str, Any]:
    """The conn.log fields (ZEEK_FIELDS) of each Zeek view (track/zeek_view.py VIEW), a
    column each, and "timed": whether its duration is over 0 (ZEEK_TIMED are set only
    then). "history" is Texts, one after another from the start of their buffer: Zeek's
    letters (and "^"), which JSON writes as they are, never a Python string each; "orig"
    and "conn_state" are Coded (ROLES, CONN_STATES). The numbers are also there as blocks,
    for _write: "ints" (_ZEEK_INTS' columns), "codes" (orig's and conn_state's), "times"
    (ts, duration)."""
    n = len(rows)
    ints, codes = np.empty((n, len(_ZEEK_INTS)), np.int64), np.empty((n, 2), np.int64)
    times, timed = np.empty((n, 2), np.float64), np.empty(n, np.bool_)
    _view_fields(rows, ints, codes, times, timed)
    hlen = rows["z_hlen"].astype(np.int64)
    stop = np.cumsum(hlen)
    fields = {"ts": times[:, 0], "orig": Coded(codes[:, 0], _NAMES["role"]),
              "conn_state": Coded(codes[:, 1], _NAMES["conn_state"]),
              "history": Texts(_prefixes(rows["z_hist"], hlen, stop), stop - hlen, stop),
              "duration": times[:, 1], **dict(zip(_ZEEK_INTS, ints.T, strict=True))}
    return {**{k: fields[k] for k in ZEEK_FIELDS}, "timed": timed, "ints": ints,
            "codes": codes, "times": times}


@jit.njit(cache=True, nogil=True)
def _view_fields(rows, ints, codes, times, timed):  # type: ignore[no-untyped-def]
    """The views' fields (views_columns) read in one pass: `ints` in _ZEEK_INTS' order,
    `codes` (orig, conn_state: zeek_view.columns'), `times` (ts, duration), `timed`."""
    states, sizes = np.empty(len(rows), np.int8), np.empty((len(rows), 2), np.int64)
    zeek_view.columns(rows, states, sizes)
    for i in range(len(rows)):
        r = rows[i]
        o = np.intp(r.z_orig)
        p = 1 - o
        ints[i, 0], ints[i, 1], ints[i, 2] = r.z_missed, sizes[i, o], sizes[i, p]
        ints[i, 3], ints[i, 4] = r.z_pkts[o], r.z_ipb[o]
        ints[i, 5], ints[i, 6] = r.z_pkts[p], r.z_ipb[p]
        codes[i, 0], codes[i, 1] = o, states[i]
        times[i, 0], times[i, 1] = r.z_first, r.z_last_ts - r.z_first
        timed[i] = times[i, 1] > 0


@jit.njit(cache=True, nogil=True)
def _prefixes(table, sizes, stops):  # type: ignore[no-untyped-def]
    """Each row's first sizes[r] bytes of `table`, one after another (row r's end at
    stops[r]: their running sum)."""
    out = np.empty(stops[-1] if len(stops) else 0, np.uint8)
    for r in range(len(sizes)):
        at = stops[r] - sizes[r]
        for j in range(sizes[r]):
            out[at + j] = table[r, j]
    return out


@jit.njit(cache=True, nogil=True)
def _micros(values):  # type: ignore[no-untyped-def]
    """Each float's microseconds, if it is a whole number of them from 1 s to 2**33 s (a
    capture's times, to the microsecond), else -1. Its text is then its seconds, a point
    and its microseconds without the zeros at their end (one 0 if all are: _put_time): the
    shortest text that reads back as the value, as orjson writes it (at this size a double
    is finer than 1e-6, so no shorter text is as near)."""
    out = np.empty(len(values), np.int64)
    for k in range(len(values)):
        v = values[k]
        micro = np.int64(v * 1e6 + 0.5) if 1.0 <= v < 8589934592.0 else np.int64(-1)
        out[k] = micro if micro >= 0 and micro / 1e6 == v else -1  # (IEEE's division)
    return out


@jit.njit(cache=True, nogil=True, inline="always")
def _put(out, to, data, start, stop, k):  # type: ignore[no-untyped-def]
    """Text k of the table at out[to:]; returns where it ends."""
    i, end, t = _index(start[k]), _index(stop[k]), _index(to)
    while i < end:
        out[t] = data[i]
        t += _index(1)
        i += _index(1)
    return np.int64(t)


@jit.njit(cache=True, nogil=True, inline="always")
def _put_int(out, to, v):  # type: ignore[no-untyped-def]
    """An integer in decimal at out[to:] (as orjson writes it); returns where it ends."""
    if 0 <= v < 100:  # most counts
        if v < 10:
            out[to] = _ZERO + v
            return to + 1
        out[to], out[to + 1] = _PAIRS[2 * v], _PAIRS[2 * v + 1]
        return to + 2
    if v < 0:
        if v == _MOST_NEGATIVE:  # whose opposite is no int64
            for i in range(len(_MOST_NEGATIVE_TEXT)):
                out[to + i] = _MOST_NEGATIVE_TEXT[i]
            return to + len(_MOST_NEGATIVE_TEXT)
        out[to] = _MINUS
        to += 1
        v = -v
    size, power = 1, 10
    while size < 19 and v >= power:
        size += 1
        power *= 10
    return _put_digits(out, to, v, size)


@jit.njit(cache=True, nogil=True, inline="always")
def _put_digits(out, to, v, size):  # type: ignore[no-untyped-def]
    """v (0 or more) as `size` decimal digits (0s before) at out[to:], two at a time;
    returns where they end."""
    i = to + size
    while i - to >= 2:
        pair = v % 100 * 2
        out[i - 2], out[i - 1] = _PAIRS[pair], _PAIRS[pair + 1]
        v //= 100
        i -= 2
    if i > to:
        out[to] = _ZERO + v % 10
    return to + size


@jit.njit(cache=True, nogil=True, inline="always")
def _put_time(out, to, micro, data, start, stop, last):  # type: ignore[no-untyped-def]
    """A float's text at out[to:], as _Table.floats gives it: microseconds, or -1 - the
    number of the table's text; returns where it ends. `last`: the last seconds written,
    and where in `out` (their text copied, not made again: a record's times mostly share
    them)."""
    if micro < 0:
        return _put(out, to, data, start, stop, -1 - micro)
    seconds = micro // 1000000
    if seconds == last[0]:
        for i in range(last[2]):
            out[to + i] = out[last[1] + i]
        end = to + last[2]
    else:
        end = _put_int(out, to, seconds)
        last[0], last[1], last[2] = seconds, to, end - to
    out[end] = _POINT
    _put_digits(out, end + 1, micro - seconds * 1000000, 6)
    size = 6
    while size > 1 and out[end + size] == _ZERO:
        size -= 1
    return end + 1 + size


@jit.njit(cache=True, nogil=True, inline="always")
def _put_map(out, to, counts, r, keys, data, start, stop):  # type: ignore[no-untyped-def]
    """Row r's counts that are not 0, as a JSON object's members: key texts keys + a (the
    table's), comma between; returns where they end."""
    first = True
    for a in range(counts.shape[1]):
        if counts[r, a]:
            if not first:
                out[to] = _COMMA
                to += 1
            first = False
            to = _put(out, to, data, start, stop, keys + a)
            to = _put_int(out, to, counts[r, a])
    return to


@jit.njit(cache=True, nogil=True, inline="always")
def _put_view(out, to, v, data, start, stop, keys, coded, history, ints, codes, times,
              timed, last):  # type: ignore[no-untyped-def]
    """Zeek view v's JSON object (ZEEK_FIELDS) at out[to:]; returns where it ends."""
    to = _put(out, to, data, start, stop, keys + K_TS)
    to = _put_time(out, to, times[v, 0], data, start, stop, last)
    to = _put(out, to, data, start, stop, keys + K_ORIG)
    to = _put(out, to, data, start, stop, _name(coded, len(_CODED), codes[v, 0]))
    to = _put(out, to, data, start, stop, keys + K_CONN_STATE)
    to = _put(out, to, data, start, stop, _name(coded, len(_CODED) + 1, codes[v, 1]))
    to = _put(out, to, data, start, stop, keys + K_HISTORY)
    to = _put(out, to, data, start, stop, keys + K_QUOTE)
    to = _put(out, to, data, start, stop, history + v)
    to = _put(out, to, data, start, stop, keys + K_QUOTE)
    to = _put(out, to, data, start, stop, keys + K_MISSED)
    to = _put_int(out, to, ints[v, 0])
    to = _put(out, to, data, start, stop, keys + K_DURATION)
    to = _put_time(out, to, times[v, 1], data, start, stop, last) if timed[v] else \
        _put(out, to, data, start, stop, keys + K_NULL)
    for k in range(1, 7):  # orig_bytes, resp_bytes: null unless timed (ZEEK_TIMED)
        to = _put(out, to, data, start, stop, keys + K_ORIG_BYTES + k - 1)
        to = _put_int(out, to, ints[v, k]) if k > 2 or timed[v] else \
            _put(out, to, data, start, stop, keys + K_NULL)
    return _put(out, to, data, start, stop, keys + K_CLOSE)


@jit.njit(cache=True, nogil=True, inline="always")
def _name(coded, k, code):  # type: ignore[no-untyped-def]
    """The number of the text of Coded column k's name by its code (-1: None, the last),
    its names' texts from coded[k] to coded[k + 1] in the table (_CODED_TEXTS)."""
    return coded[k] + code % (coded[k + 1] - coded[k])


@jit.njit(cache=True, nogil=True)
def _write(data, start, stop, places, coded, sections, host, port, ints, codes, flags, times,
           moves, moves_state, moves_timer, moves_inferred, moves_start, ntr, anomalies,
           tunnel, ws, with_ws, first, later, later_views, zeek_ints, zeek_codes, zeek_times,
           timed):  # type: ignore[no-untyped-def]
    """The records' lines (lines), one after another, from their columns and the texts'
    table (data, start, stop: _Table; `places`: where the keys, names, anomaly_keys,
    ws_keys, move ends and the line's end begin in it; `coded`: each Coded column's names,
    _CODED_TEXTS)."""
    keys, names, anomaly_keys, ws_keys, move_ends, end = places[0], places[1], places[2], \
        places[3], places[4], places[5]
    n = len(ints)
    longest = 0
    for k in range(len(start)):
        longest = max(longest, stop[k] - start[k])
    out = np.empty(n * 2048, np.uint8)
    to = 0
    last = np.full(3, -1, np.int64)  # _put_time's
    hosts, history = sections[0], sections[1]
    for r in range(n):
        # at most: each text the longest, each number 24 bytes
        views = 1 + later[r + 1] - later[r]
        bound = (longest + 24) * (64 + 8 * (ntr[r, 0] + ntr[r, 1]) + 32 * views
                                  + 2 * (anomalies.shape[1] + ws.shape[1]))
        if to + bound > len(out):
            grown = np.empty(max(2 * len(out), to + bound), np.uint8)
            grown[:to] = out[:to]
            out = grown
        to = _put(out, to, data, start, stop, keys + K_ID)
        to = _put_int(out, to, ints[r, 0])
        for e in range(2):  # the client's address, the server's: "host:port"
            to = _put(out, to, data, start, stop, keys + K_CLIENT + e)
            to = _put(out, to, data, start, stop, keys + K_QUOTE)
            to = _put(out, to, data, start, stop, hosts + host[r, e])
            out[to] = _COLON
            to = _put_int(out, to + 1, port[r, e])
            to = _put(out, to, data, start, stop, keys + K_QUOTE)
        to = _put(out, to, data, start, stop, keys + K_ROLES)
        to = _put(out, to, data, start, stop, _name(coded, 0, codes[r, 0]))
        to = _put(out, to, data, start, stop, keys + K_MID)
        to = _put(out, to, data, start, stop, names + flags[r, 0])
        for k in range(2):
            to = _put(out, to, data, start, stop, keys + K_FIRST + k)
            to = _put_time(out, to, times[r, k], data, start, stop, last)
        for k in range(1, 6):  # end, closer, closer_evidence, closed_by, reset_by
            to = _put(out, to, data, start, stop, keys + K_END + k - 1)
            to = _put(out, to, data, start, stop, _name(coded, k, codes[r, k]))
        to = _put(out, to, data, start, stop, keys + K_ENDPOINTS)
        for e in range(2):
            if e:
                to = _put(out, to, data, start, stop, keys + K_COMMA)
            to = _put(out, to, data, start, stop, keys + K_CLIENT_STATE + e)
            to = _put(out, to, data, start, stop, _name(coded, 6 + e, codes[r, 6 + e]))
            for k in range(5):  # packets, payload_bytes, syn, fin, rst
                to = _put(out, to, data, start, stop, keys + K_PACKETS + k)
                to = _put_int(out, to, ints[r, 1 + 5 * e + k])
            to = _put(out, to, data, start, stop, keys + K_TRANSITIONS)
            for m in range(moves_start[r, e], moves_start[r, e] + ntr[r, e]):
                if m > moves_start[r, e]:
                    to = _put(out, to, data, start, stop, keys + K_COMMA)
                to = _put(out, to, data, start, stop, keys + K_TS)
                to = _put_time(out, to, moves[m], data, start, stop, last)
                to = _put(out, to, data, start, stop, move_ends + (
                    moves_state[m] * 2 + moves_timer[m]) * 2 + moves_inferred[m])
            to = _put(out, to, data, start, stop, keys + K_END_ENDPOINT)
        to = _put(out, to, data, start, stop, keys + K_CLOSE)
        to = _put(out, to, data, start, stop, keys + K_ANOMALIES)
        to = _put_map(out, to, anomalies, r, anomaly_keys, data, start, stop)
        to = _put(out, to, data, start, stop, keys + K_END_MAP)
        to = _put(out, to, data, start, stop, keys + K_EVICTED)
        to = _put(out, to, data, start, stop, names + flags[r, 1])
        if tunnel[r] >= 0:
            to = _put(out, to, data, start, stop, tunnel[r])
        if with_ws:
            to = _put(out, to, data, start, stop, keys + K_WIRESHARK)
            to = _put_map(out, to, ws, r, ws_keys, data, start, stop)
            to = _put(out, to, data, start, stop, keys + K_END_MAP)
        to = _put(out, to, data, start, stop, keys + K_ZEEK)
        to = _put_view(out, to, first[r], data, start, stop, keys, coded, history, zeek_ints,
                       zeek_codes, zeek_times, timed, last)
        if later[r + 1] > later[r]:
            to = _put(out, to, data, start, stop, keys + K_LATER)
            for j in range(later[r], later[r + 1]):
                if j > later[r]:
                    to = _put(out, to, data, start, stop, keys + K_COMMA)
                to = _put_view(out, to, later_views[j], data, start, stop, keys, coded,
                               history, zeek_ints, zeek_codes, zeek_times, timed, last)
            to = _put(out, to, data, start, stop, keys + K_END_LATER)
        to = _put(out, to, data, start, stop, keys + K_CLOSE)
        to = _put(out, to, data, start, stop, end)
    return out[:to]


def fixed6(values: np.ndarray) -> Texts:
    """Each value's text as "{:.6f}" writes it (Zeek's times and intervals), by compiled
    code (_fixed6_micros) where it can tell the rounding, else by Python."""
    values = np.ascontiguousarray(values, np.float64)
    micros = _fixed6_micros(values)
    odd = np.flatnonzero(micros < 0)
    other = words([f"{v:.6f}" for v in values[odd].tolist()])
    data, stop = _put_fixed6(micros, other.data, other.start, other.stop)
    return Texts(data, np.concatenate(([0], stop[:-1])), stop)


@jit.njit(cache=True, nogil=True)
def _fixed6_micros(values):  # type: ignore[no-untyped-def]
    """Each value rounded to whole microseconds as "{:.6f}" rounds its exact binary value,
    where that is sure, else -1: from 0 to 2**32 s, a whole number of them (the double
    nearest to it: within a quarter of a microsecond, so its text), or with the product's
    fraction farther from a half than the product's rounding error (2**-52 of it). Not 0,
    whose sign the text keeps ("-0.000000")."""
    out = np.empty(len(values), np.int64)
    for k in range(len(values)):
        v = values[k]
        out[k] = -1
        if 0.0 < v < 4294967296.0:
            p = v * 1e6
            whole = np.floor(p)
            fraction = p - whole
            micro = np.int64(whole) + (1 if fraction >= 0.5 else 0)
            if micro / 1e6 == v or abs(fraction - 0.5) > p * 2.3e-16:
                out[k] = micro
    return out


@jit.njit(cache=True, nogil=True)
def _put_fixed6(micros, data, start, stop):  # type: ignore[no-untyped-def]
    """The texts of _fixed6_micros' values: seconds, a point and six digits; for each -1,
    the next of the texts given (data, start, stop). Returns the bytes and where each ends."""
    out = np.empty(len(micros) * 18 + len(data), np.uint8)
    ends = np.empty(len(micros), np.int64)
    to, odd = 0, 0
    for k in range(len(micros)):
        micro = micros[k]
        if micro < 0:
            to = _put(out, to, data, start, stop, odd)
            odd += 1
        else:
            seconds = micro // 1000000
            to = _put_int(out, to, seconds)
            out[to] = _POINT
            to = _put_digits(out, to + 1, micro - seconds * 1000000, 6)
        ends[k] = to
    return out[:to], ends


def digests(texts: Texts, size: int) -> np.ndarray:
    """Each text's BLAKE2b hash of `size` bytes (1 to 64; hashlib.blake2b(text,
    digest_size=size)), a row each, by compiled code (a hashlib call a connection took a
    third of the conn.log's making). Uncompiled (jit.PLAIN: a small capture), hashlib's:
    the compiled code's loops would take milliseconds a text there."""
    if jit.PLAIN:
        return np.frombuffer(b"".join([hashlib.blake2b(text, digest_size=size).digest()
                                       for text in texts.pieces()]), np.uint8).reshape(-1, size)
    return _blake2b(texts.data, texts.start, texts.stop, size)


@jit.njit(cache=True, nogil=True)
def _blake2b(data, start, stop, size):  # type: ignore[no-untyped-def]
    """BLAKE2b (RFC 7693), no key, of each text data[start[k]:stop[k]]."""
    out = np.empty((len(start), size), np.uint8)
    h, v, m = np.empty(8, np.uint64), np.empty(16, np.uint64), np.empty(16, np.uint64)
    block = np.empty(128, np.uint8)
    for k in range(len(start)):
        h[:] = _IV
        h[0] ^= np.uint64(0x01010000) | np.uint64(size)
        at, done = start[k], np.uint64(0)
        while stop[k] - at > 128:  # every block but the last
            for j in range(128):
                block[j] = data[at + j]
            done += np.uint64(128)
            _compress(h, v, m, block, done, False)
            at += 128
        for j in range(128):
            block[j] = data[at + j] if at + j < stop[k] else 0
        done += np.uint64(stop[k] - at)
        _compress(h, v, m, block, done, True)
        for j in range(size):
            out[k, j] = (h[j // 8] >> np.uint64(8 * (j % 8))) & np.uint64(0xFF)
    return out


@jit.njit(cache=True, nogil=True, inline="always")
def _compress(h, v, m, block, done, last):  # type: ignore[no-untyped-def]
    """BLAKE2b's F: h mixed with a block (its 16 words, little-endian), `done` bytes in."""
    for i in range(16):
        word = np.uint64(0)
        for b in range(8):
            word |= np.uint64(block[8 * i + b]) << np.uint64(8 * b)
        m[i] = word
    for i in range(8):
        v[i], v[i + 8] = h[i], _IV[i]
    v[12] ^= done
    if last:
        v[14] = ~v[14]
    for r in range(12):
        s = _SIGMA[r % 10]
        _mix(v, 0, 4, 8, 12, m[s[0]], m[s[1]])
        _mix(v, 1, 5, 9, 13, m[s[2]], m[s[3]])
        _mix(v, 2, 6, 10, 14, m[s[4]], m[s[5]])
        _mix(v, 3, 7, 11, 15, m[s[6]], m[s[7]])
        _mix(v, 0, 5, 10, 15, m[s[8]], m[s[9]])
        _mix(v, 1, 6, 11, 12, m[s[10]], m[s[11]])
        _mix(v, 2, 7, 8, 13, m[s[12]], m[s[13]])
        _mix(v, 3, 4, 9, 14, m[s[14]], m[s[15]])
    for i in range(8):
        h[i] ^= v[i] ^ v[i + 8]


@jit.njit(cache=True, nogil=True, inline="always")
def _mix(v, a, b, c, d, x, y):  # type: ignore[no-untyped-def]
    """BLAKE2b's G."""
    v[a] = v[a] + v[b] + x
    v[d] = _rotate(v[d] ^ v[a], 32)
    v[c] = v[c] + v[d]
    v[b] = _rotate(v[b] ^ v[c], 24)
    v[a] = v[a] + v[b] + y
    v[d] = _rotate(v[d] ^ v[a], 16)
    v[c] = v[c] + v[d]
    v[b] = _rotate(v[b] ^ v[c], 63)


@jit.njit(cache=True, nogil=True, inline="always")
def _rotate(x, n):  # type: ignore[no-untyped-def]
    """x rotated right by n bits (of 64)."""
    return (x >> np.uint64(n)) | (x << np.uint64(64 - n))


_IV = np.array([0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B,
                0xA54FF53A5F1D36F1, 0x510E527FADE682D1, 0x9B05688C2B3E6C1F,
                0x1F83D9ABFB41BD6B, 0x5BE0CD19137E2179], np.uint64)
_SIGMA = np.array([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
                   [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
                   [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
                   [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
                   [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
                   [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
                   [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
                   [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
                   [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
                   [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0]], np.intp)


_ZERO, _MINUS, _POINT, _COMMA, _COLON = ord("0"), ord("-"), ord("."), ord(","), ord(":")
#: "00" to "99", a pair of digits after another
_PAIRS = np.frombuffer("".join(f"{i:02}" for i in range(100)).encode(), np.uint8)
_MOST_NEGATIVE = np.iinfo(np.int64).min
_MOST_NEGATIVE_TEXT = np.frombuffer(str(_MOST_NEGATIVE).encode(), np.uint8)
