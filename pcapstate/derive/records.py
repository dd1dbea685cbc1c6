"""Retired connections as data people read: the connection record of the JSON result and
the JSON Lines stream, the brief the corpus check compares, and what a conn.log needs; each
built in bulk from the packed records the tracker hands out (track/slots.py), in one place.
"""

from collections.abc import Sequence
from functools import lru_cache
from ipaddress import ip_address
from typing import Any

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


def briefs(rows: np.ndarray, kinds: np.ndarray, closers: np.ndarray) -> list[list[Any]]:
    """The connections in brief (BRIEF_FIELDS)."""
    states = rows["st"].tolist()
    return [[a, b, t, END_NAMES[k], CLOSER_NAMES[c], STATES[st[0]].value, STATES[st[1]].value]
            for (a, b), st, t, k, c in zip(_addresses(rows), states, rows["first_ts"].tolist(),
                                           kinds.tolist(), closers.tolist(), strict=True)]


def records(rows: np.ndarray, kinds: np.ndarray, closers: np.ndarray, aborted: np.ndarray,
            evidences: np.ndarray, zeek: list[dict[str, Any]], wireshark: bool,
            tunnels: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """Each connection's record, as written to the JSON result and the JSON Lines stream
    (docs/json.md); `aborted`, `evidences`: derive/fold.py's (the closer closed by a RST;
    how the closer is known); `zeek`: zeek_fields of the same rows; `wireshark`: the tshark
    engine counted Wireshark's analysis flags; `tunnels`: the tunnels met
    (decode/unwrap.py), by number - 1."""
    c = {f: rows[f].tolist() for f in _RECORD_FIELDS}  # columns as Python values: fast
    # the transitions made, endpoint after endpoint (not the unused places), and where
    # each endpoint's begin; those made by a timer or inferred said so
    made = np.arange(rows.dtype["tr_ts"].shape[1]) < rows["ntr"][:, :, None]
    timers = rows["tr_timer"][made]
    moves = [{"ts": t, "state": STATE_NAMES[st]}
             for t, st in zip(rows["tr_ts"][made].tolist(), rows["tr_st"][made].tolist(),
                              strict=True)]
    ntr = rows["ntr"].astype(np.int64)
    starts = (np.cumsum(ntr) - ntr.reshape(-1)).reshape(-1, 2)
    for k in np.flatnonzero(timers == 1):
        moves[k]["timer"] = True
    firsts = starts[(rows["inferred"] != 0)[:, None] & (ntr > 0)]
    for k in {*np.flatnonzero(timers == INFERRED_MOVE).tolist(), *firsts.tolist()}:
        moves[k]["inferred"] = True
    begin = starts.tolist()
    anomalies: list[dict[str, int]] = [{} for _ in range(len(rows))]
    counts = rows["anom"][:, _BY_NAME]
    for i, a in zip(*np.nonzero(counts), strict=True):  # by name, as a row's are sorted
        anomalies[i][ANOMALY_NAMES[_BY_NAME[a]]] = int(counts[i, a])
    ws = rows["ws"].tolist() if wireshark else None
    kinds, closers = kinds.tolist(), closers.tolist()
    aborted, evidences = aborted.tolist(), evidences.tolist()
    out = []
    for i, ((client, server), z) in enumerate(zip(_addresses(rows), zeek, strict=True)):
        reset_by, roles = c["reset_by"][i], _ROLES_FROM[c["roles"][i]]
        closer, evidence = CLOSER_NAMES[closers[i]], evidences[i]
        rec = {
            "id": c["cid"][i],
            "client": client,
            "server": server,
            "roles_from": roles,
            "mid_stream": roles != Roles.SYN,
            "first_ts": c["first_ts"][i],
            "last_ts": c["last_ts"][i],
            "end": END_NAMES[kinds[i]],
            "closer": closer,
            "closer_evidence": EVIDENCE_NAMES[evidence] if evidence >= 0 else None,
            # how the closer closed: a FIN first, or an abort (its RST ended it); not seen
            # where it closed before the capture
            "closed_by": None if closer == Closer.NONE
            or EVIDENCE_NAMES[evidence] == CloserEvidence.INFERRED
            else "rst" if aborted[i] else "fin",
            "reset_by": None if reset_by < 0 else ROLES[reset_by],
            "endpoints": {ROLES[e]: _endpoint_json(c, i, e, moves, begin[i][e])
                          for e in range(2)},
            "anomalies": anomalies[i],
            "evicted": bool(c["evicted"][i]),
        }
        if c["tunnel"][i]:
            rec["tunnel"] = tunnels[c["tunnel"][i] - 1]
        if ws is not None:
            rec["wireshark_analysis"] = {name: v for name, v in zip(
                WIRESHARK_ANALYSIS, ws[i], strict=True) if v}
        rec.update(z)
        out.append(rec)
    return out


#: The packed record's fields a connection record reads (records, _endpoint_json).
_RECORD_FIELDS = ("cid", "roles", "first_ts", "last_ts", "reset_by", "tunnel", "evicted",
                  "inferred", "st", "packets", "payload", "syns", "fins", "rsts", "ntr")
# names as plain strings (not the vocabulary's StrEnums: JSON writes them twice as fast)
_ROLES_FROM = [r.value for r in ROLE_NAMES]
_BY_NAME = sorted(range(len(ANOMALY_NAMES)), key=lambda a: ANOMALY_NAMES[a])


def _endpoint_json(c: dict[str, list[Any]], i: int, e: int, moves: list[dict[str, Any]],
                   begin: int) -> dict[str, Any]:
    """Endpoint e of row i, from the columns `c` (_RECORD_FIELDS); its transitions are
    `moves` from `begin` on."""
    return {
        "final_state": STATE_NAMES[c["st"][i][e]],
        "packets": c["packets"][i][e],
        "payload_bytes": c["payload"][i][e],
        "syn": c["syns"][i][e],
        "fin": c["fins"][i][e],
        "rst": c["rsts"][i][e],
        "transitions": moves[begin:begin + c["ntr"][i][e]],
    }


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


def zeek_fields(rows: np.ndarray, ended: dict[int, list[np.void]]) -> list[dict[str, Any]]:
    """`zeek`: the connection Zeek saw begin with each one; `zeek_later`, only when Zeek
    ended it and began others on the 4-tuple while this one went on: those."""
    now = _zeek_views(rows)
    if not ended:
        return [{"zeek": z} for z in now]
    out = []
    for cid, z in zip(rows["cid"].tolist(), now, strict=True):
        views = ended.get(cid)
        if views:
            first, *later = [*_zeek_views(jit.records(np.array(views, rows.dtype))), z]
            out.append({"zeek": first, "zeek_later": later})
        else:
            out.append({"zeek": z})
    return out


def zeek_columns(views: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each Zeek view's conn_state (its code in CONN_STATES) and its endpoints' sizes."""
    states, sizes = np.empty(len(views), np.int8), np.empty((len(views), 2), np.int64)
    zeek_view.columns(views, states, sizes)
    return states, sizes


def _zeek_views(rows: np.ndarray) -> list[dict[str, Any]]:
    """The conn.log fields of each row's Zeek view (duration and bytes unset when the
    duration is 0, as Zeek logs them)."""
    states, sizes = zeek_columns(rows)
    orig, first, last, missed, hlen, pkts, ipb = (rows[f].tolist() for f in (
        "z_orig", "z_first", "z_last_ts", "z_missed", "z_hlen", "z_pkts", "z_ipb"))
    hist = rows["z_hist"].tobytes()
    out = []
    for i, (state, size) in enumerate(zip(states.tolist(), sizes.tolist(), strict=True)):
        o, r = orig[i], 1 - orig[i]
        duration = last[i] - first[i]
        out.append({
            "ts": first[i], "orig": ROLES[o], "conn_state": CONN_STATES[state],
            "history": hist[i * ZEEK_HISTORY:i * ZEEK_HISTORY + hlen[i]].decode("ascii"),
            "missed_bytes": missed[i], "duration": duration if duration > 0 else None,
            "orig_bytes": size[o] if duration > 0 else None,
            "resp_bytes": size[r] if duration > 0 else None,
            "orig_pkts": pkts[i][o], "orig_ip_bytes": ipb[i][o],
            "resp_pkts": pkts[i][r], "resp_ip_bytes": ipb[i][r]})
    return out
