"""Retired connections as data people read: the connection record of the JSON result and
the JSON Lines stream, the brief the corpus check compares, and what a conn.log needs; each
built in bulk from the packed records the tracker hands out (track/slots.py), in one place.
"""

import functools
import gc
from collections.abc import Callable, Sequence
from functools import lru_cache
from ipaddress import ip_address
from typing import Any, NamedTuple, ParamSpec, TypeVar

import numpy as np

from pcapstate import jit
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

P = ParamSpec("P")
R = TypeVar("R")


def _bulk(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn`, which builds thousands of dicts and lists that hold no cycles, with the garbage
    collector's passes held off meanwhile: allocation sets one off every 700 containers,
    and each only walked what was being built (measured on the benchmark capture: a
    quarter of the time records took)."""
    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        was = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if was:
                gc.enable()
    return run

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


def _addresses(rows: np.ndarray) -> list[tuple[str, str]]:
    """Each row's (client, server) addresses, read in bulk."""
    v6, hi, lo, ports = (rows[f].tolist() for f in ("v6", "ip_hi", "ip_lo", "port"))
    return [(f"{_host(v, h[0], o[0])}:{p[0]}", f"{_host(v, h[1], o[1])}:{p[1]}")
            for v, h, o, p in zip(v6, hi, lo, ports, strict=True)]


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


@_bulk
def briefs(rows: np.ndarray, kinds: np.ndarray, closers: np.ndarray) -> list[list[Any]]:
    """The connections in brief (BRIEF_FIELDS)."""
    states = rows["st"].tolist()
    return [[a, b, t, END_NAMES[k], CLOSER_NAMES[c], STATES[st[0]].value, STATES[st[1]].value]
            for (a, b), st, t, k, c in zip(_addresses(rows), states, rows["first_ts"].tolist(),
                                           kinds.tolist(), closers.tolist(), strict=True)]


def columns(rows: np.ndarray, kinds: np.ndarray, closers: np.ndarray, aborted: np.ndarray,
            evidences: np.ndarray, wireshark: bool = False,
            tunnels: Sequence[dict[str, Any]] = (),
            picks: np.ndarray | None = None) -> dict[str, Any]:
    """The fields of each connection's record, a column each (numpy arrays; names as
    objects, None where a record has null), worked out once for the JSON records and the
    Parquet file (render/parquet.py). `aborted`, `evidences`: derive/fold.py's (the closer
    closed by a RST; how the closer is known). Per endpoint ("client_" and "server_"
    prefixes): final_state, packets, payload_bytes, syn, fin, rst. The transitions made,
    endpoint after endpoint: "moves_ts", "moves_state", "moves_timer", "moves_inferred";
    each endpoint's first at "moves_start" [row, endpoint], "ntr" [row, endpoint] of them.
    "anomalies": the counts, a column for each of "anomaly_names"; "wireshark": those of
    Wireshark's analysis flags (vocab.WIRESHARK_ANALYSIS) when the tshark engine counted
    them (`wireshark`), else None; "tunnel": the number of the tunnel the connection came in
    (1 on), or 0, and "tunnel_name" its name (tunnel_name of `tunnels`, by number - 1) or
    None; with the diagnoses' rules' bits (`picks`, derive/rules.py pick), "signs": the
    diagnoses each connection shows a sign of (rules.SIGNS), a list each."""
    names = _NAMES
    client, server = zip(*_addresses(rows), strict=True) if len(rows) else ((), ())
    closed_by = np.where(aborted, "rst", "fin").astype(object)
    closed_by[(closers == _CLOSER_NONE) | (evidences == _INFERRED)] = None
    # the transitions made (not the unused places), and where each endpoint's begin
    made = np.arange(rows.dtype["tr_ts"].shape[1]) < rows["ntr"][:, :, None]
    ntr = rows["ntr"].astype(np.int64)
    starts = (np.cumsum(ntr) - ntr.reshape(-1)).reshape(-1, 2)
    timer = rows["tr_timer"][made]
    inferred = timer == INFERRED_MOVE  # and the first move of a connection found inferred
    inferred[starts[(rows["inferred"] != 0)[:, None] & (ntr > 0)]] = True
    out = {
        "id": rows["cid"], "client": np.array(client, object),
        "server": np.array(server, object), "roles_from": names["roles"][rows["roles"]],
        "mid_stream": rows["roles"] != _BY_SYN, "first_ts": rows["first_ts"],
        "last_ts": rows["last_ts"], "end": names["end"][kinds],
        "closer": names["closer"][closers],
        "closer_evidence": names["evidence"][evidences],  # -1: not known, the None at the end
        "closed_by": closed_by, "reset_by": names["role"][rows["reset_by"]],
        "anomalies": rows["anom"][:, _BY_NAME], "anomaly_names": names["anomalies"],
        "evicted": rows["evicted"] != 0, "tunnel": rows["tunnel"],
        "moves_ts": rows["tr_ts"][made], "moves_state": names["state"][rows["tr_st"][made]],
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
    final = names["state"][rows["st"]]
    for e, role in enumerate(ROLES):
        out[f"{role}_final_state"] = final[:, e]
        for field, column in _COUNTS:
            out[f"{role}_{field}"] = rows[column][:, e]
    return out


@_bulk
def records(cols: dict[str, Any], zeek: list[dict[str, Any]],
            tunnels: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """Each connection's record, as written to the JSON result and the JSON Lines stream
    (docs/json.md), from its columns (columns); `zeek`: zeek_fields of the same rows;
    `tunnels`: the tunnels met (decode/unwrap.py), by number - 1."""
    anomalies = _count_maps(cols["anomalies"], cols["anomaly_names"])
    ws = None if cols["wireshark"] is None else _count_maps(
        cols["wireshark"], list(WIRESHARK_ANALYSIS))
    c = {k: v.tolist() for k, v in cols.items() if k in _AS_LISTS}  # Python values: fast
    moves = [{"ts": t, "state": st}
             for t, st in zip(c["moves_ts"], c["moves_state"], strict=True)]
    for k in np.flatnonzero(cols["moves_timer"]):  # said only when so
        moves[k]["timer"] = True
    for k in np.flatnonzero(cols["moves_inferred"]):
        moves[k]["inferred"] = True
    # each endpoint's fields (_ENDPOINT) and transitions, row after row
    ends = []
    for e, role in enumerate(ROLES):
        fields = zip(*(c[f"{role}_{name}"] for name in _ENDPOINT), strict=True)
        spans = zip(c["moves_start"], c["ntr"], strict=True)
        ends.append([{**dict(zip(_ENDPOINT, values, strict=True)),
                      "transitions": moves[start[e]:start[e] + n[e]]}
                     for values, (start, n) in zip(fields, spans, strict=True)])
    out = []
    for i, (values, client, server, z) in enumerate(zip(
            zip(*(c[k] for k in _PLAIN), strict=True), *ends, zeek, strict=True)):
        rec = dict(zip(_PLAIN, values, strict=True))
        rec["endpoints"] = {"client": client, "server": server}
        rec["anomalies"] = anomalies[i]
        rec["evicted"] = c["evicted"][i]
        if c["tunnel"][i]:
            rec["tunnel"] = tunnels[c["tunnel"][i] - 1]
        if ws is not None:
            rec["wireshark_analysis"] = ws[i]
        rec.update(z)
        out.append(rec)
    return out


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
#: The columns records reads as Python lists
_AS_LISTS = {*_PLAIN, "evicted", "tunnel", "moves_ts", "moves_state", "moves_start", "ntr",
             *(f"{role}_{name}" for role in ROLES for name in _ENDPOINT)}


def _table(names: Sequence[Any]) -> np.ndarray:
    return np.array([*names, None], object)


#: The vocabulary's names as object arrays a column of codes indexes (-1: the None at the
#: end); "role": client or server (ROLES)
_NAMES = {"closer": _table(CLOSER_NAMES), "evidence": _table(EVIDENCE_NAMES),
          "end": _table(END_NAMES), "state": _table(STATE_NAMES),
          "roles": _table([r.value for r in ROLE_NAMES]), "role": _table(ROLES),
          "anomalies": np.array([ANOMALY_NAMES[a] for a in _BY_NAME], object)}


def _count_maps(counts: np.ndarray, names: Sequence[str]) -> list[dict[str, int]]:
    """Each row of `counts` (a column per name) as a map of name to count, counts of 0
    left out, in the names' order."""
    maps: list[dict[str, int]] = [{} for _ in range(len(counts))]
    for i, a in zip(*np.nonzero(counts), strict=True):
        maps[i][names[a]] = int(counts[i, a])
    return maps


@_bulk
def zeek_records(rows: np.ndarray, zeek: list[dict[str, Any]],
                 tunnels: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """What a Zeek conn.log needs of each connection (render/zeeklog.py): its endpoints,
    `zeek` and `zeek_later` as in its record (`zeek`: zeek_fields of the same rows), and its
    `tunnel`, if it came in one."""
    out = [{"client": a, "server": b} | z
           for (a, b), z in zip(_addresses(rows), zeek, strict=True)]
    for rec, number in zip(out, rows["tunnel"].tolist(), strict=True):
        if number:
            rec["tunnel"] = tunnels[number - 1]
    return out


class ZeekViews(NamedTuple):
    """The Zeek views of a batch of connections: `columns` of every view (views_columns),
    the rows' own first, then those Zeek ended early while a row went on; `first`, each
    row's first view there; `later`, the indexes there of the views Zeek began after it
    on the row's 4-tuple, for each row that has any (an empty dict when none has)."""

    columns: dict[str, np.ndarray]
    first: np.ndarray
    later: dict[int, list[int]]


def zeek_views(rows: np.ndarray, ended: dict[int, list[np.void]]) -> ZeekViews:
    """The connection Zeek saw begin with each row, and, only when Zeek ended it and began
    others on the 4-tuple while this one went on (`ended`, by connection id), those."""
    first = np.arange(len(rows))
    later: dict[int, list[int]] = {}
    if not ended:
        return ZeekViews(views_columns(rows), first, later)
    extra: list[np.void] = []
    for i, cid in enumerate(rows["cid"].tolist()):
        views = ended.get(cid)
        if views:
            at = len(rows) + len(extra)  # the row's first view, then those after it
            first[i], later[i] = at, [*range(at + 1, at + len(views)), i]
            extra += views
    if not extra:
        return ZeekViews(views_columns(rows), first, later)
    both = np.concatenate([rows, jit.records(np.array(extra, rows.dtype))])
    return ZeekViews(views_columns(both), first, later)


@_bulk
def zeek_fields(views: ZeekViews) -> list[dict[str, Any]]:
    """Each row's `zeek`: the connection Zeek saw begin with it; `zeek_later`, only when
    Zeek ended it and began others on the 4-tuple while this one went on: those."""
    fields = _view_dicts(views.columns)
    out = [{"zeek": fields[k]} for k in views.first.tolist()]
    for i, others in views.later.items():
        out[i]["zeek_later"] = [fields[k] for k in others]
    return out


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


def views_columns(rows: np.ndarray) -> dict[str, np.ndarray]:
    """The conn.log fields (ZEEK_FIELDS) of each row's Zeek view, a column each, and
    "timed": whether its duration is over 0 (ZEEK_TIMED are set only then)."""
    states, sizes = zeek_columns(rows)
    at, orig = np.arange(len(rows)), rows["z_orig"].astype(np.intp)
    resp = 1 - orig
    duration = rows["z_last_ts"] - rows["z_first"]
    hist, hlen = rows["z_hist"].tobytes(), rows["z_hlen"].tolist()
    pkts, ipb = rows["z_pkts"], rows["z_ipb"]
    return {
        "ts": rows["z_first"], "orig": _NAMES["role"][orig],
        "conn_state": np.array(CONN_STATES, object)[states],
        "history": np.array([hist[i * ZEEK_HISTORY:i * ZEEK_HISTORY + n].decode("ascii")
                             for i, n in enumerate(hlen)], object),
        "missed_bytes": rows["z_missed"], "duration": duration,
        "orig_bytes": sizes[at, orig], "resp_bytes": sizes[at, resp],
        "orig_pkts": pkts[at, orig], "orig_ip_bytes": ipb[at, orig],
        "resp_pkts": pkts[at, resp], "resp_ip_bytes": ipb[at, resp], "timed": duration > 0}


def _view_dicts(cols: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Each view's conn.log fields (views_columns), ZEEK_TIMED None when not timed."""
    values = {k: cols[k].tolist() for k in ZEEK_FIELDS}
    for k in ZEEK_TIMED:
        values[k] = [v if timed else None for v, timed in zip(
            values[k], cols["timed"].tolist(), strict=True)]
    return [dict(zip(ZEEK_FIELDS, v, strict=True)) for v in zip(*values.values(), strict=True)]
