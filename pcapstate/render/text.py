"""The terminal summary of a result: totals, endings, stuck findings, state durations."""

from typing import Any

from pcapstate.words import count, seconds, when

#: Findings groups shown in the terminal summary and the reports, worst first; the JSON
#: result keeps them all. Stuck clients are grouped by the service they tried to reach
#: (verdict.service_of), but a scan of many services still makes many groups.
TOP_GROUPS = 10


def _plain(value: float) -> str:
    """A setting as the user would type it: 60s, 0.5s."""
    return f"{value:g}s"


def counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in d.items()) or "none"


def more_groups(findings: list[dict[str, Any]]) -> str:
    """What the top groups leave out, in words ("" when nothing is)."""
    rest = findings[TOP_GROUPS:]
    if not rest:
        return ""
    return (f"and {count(len(rest), 'more group')} ("
            f"{count(sum(f['count'] for f in rest), 'stuck endpoint')}; the JSON result lists "
            "every group)")


def outcome_words(name: str) -> str:
    """How a stuck endpoint ended, in words: "reset by the peer"."""
    words = {"open": "still stuck at capture end", "reset_by_peer": "reset by the peer",
             "reset_by_self": "reset by themselves"}
    return words.get(name, "then moved to " + name.upper())


def outcomes(group: dict[str, Any], sep: str) -> str:
    """How a findings group's endpoints ended: "3 reset by the peer, 1 still stuck ..."."""
    return sep.join(f"{n:,} {outcome_words(k)}" for k, n in group["outcomes"].items())


#: The columns of the time-in-each-state table (`duration_rows`) and what the censored
#: ones mean (`DURATION_NOTE`).
DURATION_COLUMNS = ["state", "count", "complete", "from before", "to the end", "p50", "p90",
                    "p99", "max", "censored max"]
DURATION_NOTE = ("percentiles of complete durations, each the middle of a histogram bin "
                 "of 100 a decade, so to within 1.2%; \"from before\": already in the state "
                 "when the capture began (or when it first saw the connection), \"to the "
                 "end\": still in it at capture end; those are lower bounds, counted apart")


def duration_rows(result: dict[str, Any]) -> list[list[str]]:
    """The time-in-each-state table, a state a row: counts (censored on the left, on the
    right; one censored on both sides counts in both), then the percentiles of the complete
    durations and the longest, then the longest censored ("+": a lower bound)."""
    rows = []
    for state, d in result["durations"].items():
        left, right = (d[k] + d["both_censored"] for k in ("left_censored", "right_censored"))
        rows.append([state, f"{d['count']:,}", f"{d['complete']:,}", f"{left:,}", f"{right:,}",
                     *(seconds(d[k]) for k in ("p50", "p90", "p99", "max")),
                     seconds(d["max_censored"]) + ("+" if left or right else "")])
    return rows


def stuck_words(f: dict[str, Any], limit: float | None) -> str:
    """A findings group's count in words that add up with `ss`: "46 in CLOSE_WAIT at capture
    end, 34 of them for longer than 10s"; "" for an inferred group, or when all those at
    the end are stuck (`outcomes` says how many)."""
    at_end, stuck = f.get("at_capture_end", f["still_open"]), f["still_open"]
    if f.get("inferred") or at_end == stuck:
        return ""
    return (f"{at_end:,} in {f['state']} at capture end, {stuck:,} of them for longer than "
            + (_plain(limit) if limit is not None else "its threshold"))


def inferred_words(f: dict[str, Any]) -> str:
    """Why an inferred findings group was inferred."""
    peer = "client" if f["role"] == "server" else "server"
    return (f"inferred: each {f['role']}'s FIN was answered by a RST from its {peer}, whose "
            f"socket had gone: the {peer} closed first, before the capture began, and the "
            f"{f['role']} sat in {f['state']} until it sent its FIN")


def closed_first(f: dict[str, Any], sep: str) -> str:
    """Who closed a findings group's connections first, after `sep` ("" where nobody did,
    and in a result from before version 3, which does not say)."""
    by = f.get("closed_first_by")
    return f"{sep}closed first by {counts(by)}" if by and set(by) != {"none"} else ""


def closer_words(conns: dict[str, Any]) -> str:
    """Who closed first, and how much of it the capture does not show as fact."""
    ev = conns.get("by_closer_evidence", {})
    notes = [f"{ev[k]:,} {words}" for k, words in (
        ("inferred", "inferred from FINs answered by RSTs"),
        ("unknown", "first to close in the capture, which began after they opened")) if ev.get(k)]
    return counts(conns["by_closer"]) + (f" (of these, {'; '.join(notes)})" if notes else "")


def _vantage(v: dict[str, Any]) -> str:
    told = v["handshakes"] - v["too_close_to_tell"]
    where = {"client": "near the clients", "server": "near the servers",
             "between": "between clients and servers", "mixed": "mixed",
             "unknown": "unknown"}[v["estimate"]]
    if not told:
        n = v["handshakes"]
        return where + ((" (1 handshake, too fast to tell)" if n == 1 else
                         f" ({n:,} handshakes, all too fast to tell)")
                        if n else " (no complete handshake)")
    if v["estimate"] == "unknown":
        return f"unknown (only {told:,} of {count(v['handshakes'], 'handshake')} tell: too few)"
    return (f"{where} (by {count(told, 'handshake')}, round trip "
            f"{seconds(v['round_trip_min'])} to {seconds(v['round_trip_max'])})")


def mid_stream_words(conns: dict[str, Any]) -> str:
    """The connections first seen mid-stream, in words ("" for none): already open when the
    capture began, or, once open connections were evicted from the full table, back after
    that (their later segments start new connections)."""
    n = conns["mid_stream"]
    if not n:
        return ""
    if conns.get("evicted", {}).get("open"):
        return (f"{n:,} first seen mid-stream: already open when the capture started, or "
                "back after the full table evicted them")
    return f"{n:,} already open when the capture started"


def table_words(result: dict[str, Any]) -> str:
    """The connection table's peak and evictions, in words."""
    limit = result["settings"].get("max_connections")
    evicted = result["connections"].get("evicted", {})
    words = f"at most {result['peak_live_connections']:,} at once" + (
        f" (limit {limit:,})" if limit else "")
    if evicted.get("total"):
        words += (f"; {evicted['total']:,} evicted from the full table ({evicted['finished']:,}"
                  f" finished, {evicted['attempt']:,} handshake attempts, "
                  f"{evicted['open']:,} open)")
    return words


def unread_words(result: dict[str, Any]) -> str:
    """What the verdict does not cover: no packets at all, TCP that was there but could not
    be read, or connections evicted from a full table; "" when it covers the capture."""
    evicted = result["connections"].get("evicted", {}).get("total")
    dropped = (f" {count(evicted, 'connection')} {'were' if evicted != 1 else 'was'} evicted "
               "from the full connection table (--max-connections): their states were "
               "dropped and their later segments followed as new connections, so the "
               "verdict may miss or misplace stuck endpoints." if evicted else "")
    cov = result.get("coverage")
    if cov and not cov["records"]:
        return " The capture holds no packets: nothing was analysed."
    if not cov or not cov["not_decoded"]:
        return dropped
    n = sum(cov["not_decoded"].values())
    if not cov["decoded"]:
        return (f" None of the {cov['records']:,} records could be decoded: the capture was "
                "not analysed.")
    return (f" {n:,} of the {cov['records']:,} records ({1 - cov['share']:.1%}) could not be "
            "decoded: connections inside them were not analysed." if cov["tcp_unread"]
            else "") + dropped


def render(result: dict[str, Any]) -> str:
    """The whole summary as one string, ending in a newline."""
    acc, conns, cap = result["accounting"], result["connections"], result["capture"]
    files = result["inputs"]
    out = [
        f"{len(files)} file{'s' if len(files) != 1 else ''}, {acc['records']:,} records, "
        f"{seconds(cap['duration'])} from {when(cap['first_ts'])} to {when(cap['end_ts'])}",
        f"Packets: {acc['tcp_segments']:,} TCP segments analysed; "
        f"other {sum(acc['other'].values()):,} ({counts(acc['other'])}); "
        f"undecodable {sum(acc['undecodable'].values()):,} ({counts(acc['undecodable'])})",
        f"Vantage point: {_vantage(result['vantage'])}",
        f"Connections: {conns['total']:,}"
        + (f" ({mid_stream_words(conns)})" if conns["mid_stream"] else "")
        + f"; {table_words(result)}",
        f"  how they ended: {counts(conns['by_end'])}",
        f"  who closed first: {closer_words(conns)}",
    ]
    if "zeek_conn_states" in conns:  # Zeek's view was followed (analyze --zeek)
        out.append(f"  Zeek's conn_state: {counts(conns['zeek_conn_states'])}"
                   + _zeek_lines(conns))
    if conns["anomalies"]:
        out.append(f"  anomalies: {counts(conns['anomalies'])}")
    out += ["", *diagnosis_lines(result.get("diagnoses", [])), ""]
    if result.get("host_evidence"):
        out += [*host_lines(result["host_evidence"]), ""]
    findings, unread = result["findings"], unread_words(result)
    if findings:
        out.append("Stuck endpoints, worst first:")
        for f in findings[:TOP_GROUPS]:
            limit = result["settings"]["stuck_after"].get(f["state"])
            head = (f"{count(f['count'], 'connection')}, since before the capture began"
                    if f.get("inferred") else f"{count(f['count'], 'connection')} longer than "
                    f"{_plain(limit) if limit is not None else 'the threshold'}, oldest "
                    f"{seconds(f['oldest'])}")
            out.append(f"  {f['state']:<12} {f['service']} ({f['role']}): {head}; "
                       f"{outcomes(f, ', ')}{closed_first(f, '; ')}")
            extra = inferred_words(f) if f.get("inferred") else stuck_words(f, limit)
            if extra:
                out.append(f"{'':15}{extra}")
            ex = max(f["examples"], key=lambda e: e["duration"])
            out.append(f"{'':15}oldest: {ex['endpoint']} with peer {ex['peer']} (connection "
                       f"{ex['conn_id']}), in {f['state']} since {when(ex['since'])}"
                       + (" or before" if f.get("inferred") else ""))
        if more := more_groups(findings):
            out.append(f"  {more}")
        if unread:
            out.append(unread.strip())
    else:
        out.append("Stuck endpoints: none." + unread)
    out += ["", f"Time in each state ({DURATION_NOTE}):"]
    rows = [DURATION_COLUMNS, *duration_rows(result)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(DURATION_COLUMNS))]
    out += ["  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(r, widths, strict=True)))
            for r in rows]
    s = result["settings"]
    by_limit: dict[float, list[str]] = {}
    for state, limit in s["stuck_after"].items():
        by_limit.setdefault(limit, []).append(state)
    out += [
        "",
        f"Assumed timers: TIME_WAIT {_plain(s['time_wait'])}, orphaned FIN_WAIT_2 "
        f"{_plain(s['fin_timeout'])}; a SYN or SYN-ACK retried in vain given up when its "
        "next retry, by their backoff, never came. Stuck means longer than "
        + "; ".join(f"{_plain(limit)} in {', '.join(states)}"
                    for limit, states in by_limit.items()) + ".",
    ]
    out += [f"warning: {w}" for w in result["warnings"]]
    return "\n".join(out) + "\n"


def diagnosis_lines(diagnoses: list[dict[str, Any]]) -> list[str]:
    """The diagnoses, worst first, the top ones, and how many more."""
    if not diagnoses:
        return ["Diagnoses: none."]
    out = ["Diagnoses, worst first:"]
    for d in diagnoses[:TOP_GROUPS]:
        out.append(f"  {d['name']}: {d['verdict']}"
                   + (f" [inferred from {d['inferred_from']}]" if d["inferred_from"] else ""))
    if rest := diagnoses[TOP_GROUPS:]:
        out.append(f"  and {count(len(rest), 'more diagnosis')} (the JSON result lists all)")
    return out


def host_lines(views: list[dict[str, Any]]) -> list[str]:
    """What each host's socket list (--ss) says, against the capture."""
    out = []
    for v in views:
        out.append(f"Host sockets, {v['path']} ({taken_at(v)}): {count(v['sockets'], 'socket')}, "
                   f"{v['in_capture']:,} of them in the capture, {v['agree']:,} in the state "
                   f"pcapstate gives then, {v['disagree']:,} not")
        for d in v["disagreements"][:5]:
            out.append(f"  {d['local']} with {d['peer']}: host {d['host']}, pcapstate "
                       f"{d['pcapstate']} (connection {d['conn_id']})")
        for h in v["held_by"][:5]:
            out.append(f"  {h['service']}: {count(h['sockets'], 'socket')} in {h['state']}, "
                       f"held by {h['process']}")
    return out


def taken_at(v: dict[str, Any]) -> str:
    """When a host's socket list (--ss) was taken, in words: "taken at 2026-...Z", or "no
    time given: ...", a clause that begins a sentence or stands in brackets."""
    return (f"taken at {when(v['taken_at'])}" if v["taken_at"] is not None
            else "no time given: the sockets are compared with the states at capture end")


def _zeek_lines(conns: dict[str, Any]) -> str:
    """Where Zeek's timers make more connections of the same ones, how many."""
    lines = sum(conns["zeek_conn_states"].values())
    return (f" ({lines:,} of Zeek's connections: its timers end some where pcapstate's go on)"
            if lines != conns["total"] else "")
