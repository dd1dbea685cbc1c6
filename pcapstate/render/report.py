"""The incident report: the verdict first, then the evidence, as Markdown or as one
self-contained HTML file, built from a result dict (docs/json.md).

The report is a list of blocks (heading, paragraph, table, code, image) rendered by
`markdown` or `html`; every string taken from a capture is escaped by the renderer. A
paragraph of pcapstate's own words ("text": the diagnoses' catalogue) may hold code spans,
written between backticks as in Markdown: each renderer makes them code.
"""

import base64
import html as html_lib
import re
from typing import Any

from pcapstate.render.text import (
    DURATION_COLUMNS,
    DURATION_NOTE,
    TOP_GROUPS,
    closed_first,
    closer_words,
    count,
    duration_rows,
    mid_stream_words,
    more_groups,
    outcomes,
    seconds,
    stuck_words,
    table_words,
    taken_at,
    unread_words,
    when,
)
from pcapstate.vocab import TOO_CLOSE, VANTAGE_MIN_SHARE, VANTAGE_MIN_TELLING
from pcapstate.words import wireshark_filter

Block = tuple[Any, ...]

# What an endpoint stuck in each state means, for the verdict.
MEANING = {
    "CLOSE_WAIT": "the peer closed first and the {role} sent no FIN of its own for over "
                  "{limit}, so the application behind {service} is not closing sockets after "
                  "the peer closes",
    "FIN_WAIT_2": "the {role} closed, the peer acknowledged and then did not close its side "
                  "for over {limit}: a half-closed connection held open by the peer",
    "LAST_ACK": "the {role} sent its FIN after the peer's and no acknowledgement came back "
                "for over {limit}: the peer has gone or the path is losing packets",
    "CLOSING": "both sides sent a FIN and the {role}'s was not acknowledged for over {limit}",
    "SYN_SENT": "the {role}'s connection attempts got no answer for over {limit}",
    "SYN_RCVD": "the {role} answered a SYN and the handshake did not complete for over "
                "{limit} (lost ACKs, or a SYN flood)",
}


def verdict(result: dict[str, Any]) -> list[str]:
    """The diagnoses, then the findings they do not say (stuck states other than
    CLOSE_WAIT), in plain words, worst first (the top ones, then how many more); one
    sentence when nothing is wrong. A result from before diagnoses: its findings."""
    diagnoses: list[dict[str, Any]] | None = result.get("diagnoses")
    listed = diagnoses or []
    out = [_sentence(d["verdict"]) + (f" Inferred from {d['inferred_from']}."
                                       if d["inferred_from"] else "")
           for d in listed[:TOP_GROUPS]]
    if len(listed) > TOP_GROUPS:
        out.append(f"And {count(len(listed) - TOP_GROUPS, 'more diagnosis')}: the JSON "
                   "result lists every one.")
    findings = [f for f in result["findings"]
                if diagnoses is None or f["state"] != "CLOSE_WAIT"]
    for f in findings[:TOP_GROUPS]:
        n, state, service = f["count"], f["state"], f["service"]
        how = (outcomes(f, "; ") if set(f["outcomes"]) != {"open"}
               else "all still stuck at capture end")
        limit = result["settings"]["stuck_after"].get(state)
        meaning = MEANING.get(state, "").format(role=f["role"], service=service,
                                                 limit=seconds(limit))
        extra = stuck_words(f, limit)
        out.append(
            f"{count(n, 'connection')} to {service} ({f['role']} side) "
            f"{'were' if n != 1 else 'was'} left in {state}, the oldest for "
            f"{seconds(f['oldest'])} ({how}{closed_first(f, '; ')})"
            + (f"; {extra}" if extra else "")
            + (f"; in every one {meaning}." if meaning else "."))
    if more := more_groups(findings):
        out.append(_sentence(more))
    unread = unread_words(result).strip()
    total = count(result["connections"]["total"], "connection")
    if unread:  # TCP was there that could not be read: never "nothing wrong"
        out.append(unread if out else f"No endpoint was found stuck in the {total} analysed. "
                   f"{unread}")
    elif not out:
        out.append(f"Nothing wrong found: of {total}, no endpoint stayed in CLOSE_WAIT or "
                   "another state that should not last longer than its threshold "
                   f"({_thresholds(result)})"
                   + (", and no diagnosis applies." if diagnoses is not None else "."))
    return out


def _sentence(words: str) -> str:
    return words[:1].upper() + words[1:] + "."


def _thresholds(result: dict[str, Any]) -> str:
    limits = result["settings"]["stuck_after"]
    return ", ".join(f"{st} {seconds(v)}" for st, v in limits.items())


def vantage_words(v: dict[str, Any]) -> str:
    """Where the capture was taken, as the handshakes tell it."""
    n, told = v["handshakes"], v["handshakes"] - v["too_close_to_tell"]
    if not n:
        return "unknown: no complete handshake was captured"
    if not told:
        return (f"unknown: in all {n:,} handshakes the SYN/ACK and the ACK each followed "
                f"within {seconds(TOO_CLOSE)} (the same host, or one LAN segment)")
    lo, hi = seconds(v["round_trip_min"]), seconds(v["round_trip_max"])
    rtt = lo if lo == hi else f"{lo} to {hi}"
    if v["estimate"] == "unknown":
        words = (f"unknown: only {told:,} of the {n:,} handshakes tell, too few to place it "
                 f"(at least {VANTAGE_MIN_TELLING} and {VANTAGE_MIN_SHARE:.0%} of them needed)")
    else:
        words = {
            "client": "at or near the clients: the SYN/ACK came a round trip after the SYN, "
                      "the ACK right after the SYN/ACK",
            "server": "at or near the servers: the SYN/ACK followed the SYN at once, the ACK "
                      "came a round trip later",
            "between": "on the path between clients and servers: both the SYN/ACK and the "
                       "ACK waited part of the round trip",
            "mixed": "mixed: near the clients in some connections, near the servers or "
                     "between in others (a host that is client of some and server of others, "
                     "or several paths)",
        }[v["estimate"]]
    tally = ", ".join(f"{v[k]:,} {k.replace('_', ' ')}" for k in
                      ("near_client", "between", "near_server", "too_close_to_tell") if v[k])
    return f"{words} (of {n:,} handshakes: {tally}; round trip {rtt})"


def evidence(ex: dict[str, Any]) -> str:
    """What the capture shows of one stuck endpoint, packet by packet, in words."""
    state, me, fin, ack = ex["state"], ex["role"], ex["fin_ts"], ex["ack_ts"]
    if ex.get("inferred") and ex["rst_ts"] is not None:
        fin = ex["since"] + ex["duration"]
        return (f"in {state} since before the capture began; its FIN at {when(fin)} "
                f"answered by a RST from the peer {_after(ex['rst_ts'], fin)}, as a host "
                "with no socket for the connection answers.")
    if state == "CLOSE_WAIT" and fin is not None:
        told = [f"FIN from the peer at {when(fin)}",
                f"acknowledged by the {me} {_after(ack, fin)}" if ack is not None
                else "its acknowledgment not captured"]
    elif fin is not None:
        told = [f"FIN from the {me} at {when(fin)}",
                f"acknowledged by the peer {_after(ack, fin)}" if ack is not None
                else "never acknowledged in the capture"]
    else:
        told = [f"entered {state} at {when(ex['since'])}"]
    start = fin if fin is not None else ex["since"]
    end = ex["since"] + ex["duration"]
    if ex["rst_ts"] is not None:
        who = "the peer" if ex["outcome"] == "reset_by_peer" else f"the {me}"
        told.append(f"RST from {who} {_after(ex['rst_ts'], start)} "
                    f"({when(ex['rst_ts'])})")
    elif ex["outcome"] == "open":
        told.append((f"no FIN from the {me} " if state == "CLOSE_WAIT" else "")
                    + f"up to the capture end, {_after(end, start)}")
    else:
        told.append(f"{ex['outcome'].upper()} {_after(end, start)}")
    return "; ".join(told) + "."


def _after(ts: float, start: float) -> str:
    return f"{seconds(ts - start)} later"


def heading(d: dict[str, Any]) -> str:
    """A diagnosis's heading, as distinct as what tells diagnoses apart (derive/diagnoses.py,
    Diagnoser.found): its name, service and side, and time_wait_pressure's host, or
    whether it was inferred: "time_wait_pressure: 10.0.0.5:80 (client side, host
    10.0.0.1)"."""
    about = [f"{d['side']} side", *([f"host {d['host']}"] if d.get("host") else []),
             *([] if d["observed"] else ["inferred"])]
    return f"{d['name']}: {d['service']} ({', '.join(about)})"


def _diagnoses(diagnoses: list[dict[str, Any]]) -> list[Block]:
    """Each of the top diagnoses: what it means, what to check, and the packets that show
    it, with a Wireshark display filter per example connection."""
    out: list[Block] = [("h", 2, "Diagnoses")] if diagnoses else []
    for d in diagnoses[:TOP_GROUPS]:
        out += [("h", 3, heading(d)),
                ("p", _sentence(d["verdict"]), False),
                ("p", "Seen directly in the packets." if d["observed"] else
                      f"An inference, from {d['inferred_from']}.", False),
                ("text", f"What it usually means: {d['meaning']}."),
                ("text", f"What to check: {d['check']}.")]
        for ex in d["evidence"]:
            steps = "; ".join(f"{when(p['ts'])} {p['what']}" for p in ex["packets"])
            out += [("p", f"Connection {ex['conn_id']}, {ex['client']} to {ex['server']}: "
                          f"{steps}. Wireshark display filter:", False),
                    ("code", ex["filter"])]
    return out


def blocks(result: dict[str, Any], charts: list[tuple[str, str]]) -> list[Block]:
    """The report, top to bottom. `charts`: (file name, title) of the charts drawn."""
    cap, acc, conns = result["capture"], result["accounting"], result["connections"]
    files = result["inputs"]
    title = ", ".join(f["path"] for f in files[:3]) + (" ..." if len(files) > 3 else "")
    out: list[Block] = [("h", 1, f"pcapstate report: {title}"), ("h", 2, "Verdict")]
    out += [("p", sentence, True) for sentence in verdict(result)]
    out += _diagnoses(result.get("diagnoses") or [])
    for v in result.get("host_evidence") or []:
        out += [("h", 2, f"Host sockets: {v['path']}"),
                ("p", f"{_sentence(taken_at(v))} {count(v['sockets'], 'socket')}, "
                      f"{v['in_capture']:,} of them in the capture: {v['agree']:,} in the state "
                      f"pcapstate gives then, {v['disagree']:,} not (a host across the path sees "
                      "each event up to half a round trip apart from the capture).", False)]
        if v["disagreements"]:
            out.append(("table", ["socket", "peer", "host", "pcapstate", "connection"],
                        [[d["local"], d["peer"], d["host"], d["pcapstate"], str(d["conn_id"])]
                         for d in v["disagreements"]]))
        if v["held_by"]:
            out.append(("table", ["service", "state", "held by", "sockets"],
                        [[h["service"], h["state"], h["process"], f"{h['sockets']:,}"]
                         for h in v["held_by"]]))

    # a compressed input's compression: gzip in a result saved before `compression` was
    # written (the one compression read then)
    out += [("h", 2, "Capture"),
            ("table", ["file", "format", "size", "records", "link types", "snaplen", "sha256"],
             [[f["path"],
               f["format"] + (f" ({f.get('compression') or 'gzip'})" if f["compressed"] else ""),
               "-" if f["size"] is None else f"{f['size']:,} bytes",
               f"{f['records']:,}", ", ".join(map(str, f["linktypes"])),
               str(f["snaplen"] or "-"), f.get("sha256") or "-"]
              for f in files])]
    st = result["settings"]
    out.append(("table", ["fact", "value"], [
        ["time span", f"{when(cap['first_ts'])} to {when(cap['end_ts'])} "
                      f"({seconds(cap['duration'])})"],
        ["vantage point", vantage_words(result["vantage"])],
        ["timers assumed", f"TIME_WAIT {seconds(st['time_wait'])}, orphaned FIN_WAIT_2 "
                           f"{seconds(st['fin_timeout'])}; a SYN or SYN-ACK retried in vain "
                           "given up when its next retry, by their backoff, never came"],
        ["stuck after", _thresholds(result)],
        ["connection table", table_words(result)],
        ["pcapstate", result["pcapstate_version"]],
        ["command", result.get("command_line") or "-"],
    ]))
    out += [("p", f"Warning: {w}", False) for w in result["warnings"]]

    rows = [["TCP segments analysed", f"{acc['tcp_segments']:,}"]]
    rows += [[f"other: {k}", f"{v:,}"] for k, v in acc["other"].items()]
    rows += [[f"undecodable: {k}", f"{v:,}"] for k, v in acc["undecodable"].items()]
    rows.append(["records read", f"{acc['records']:,}"])
    out += [("h", 2, "Packet accounting"), ("table", ["packets", "count"], rows)]

    closers = ["client", "server", "both", "none"]
    table = conns["by_end_and_closer"]
    out += [("h", 2, "Connections"),
            ("p", f"{conns['total']:,} connections"
                  + (f", {mid_stream_words(conns)}" if conns["mid_stream"] else "")
                  + ". How they ended, by who closed first:",
             False),
            ("table", ["ended", *[f"{c} first" if c in ("client", "server") else c
                                  for c in closers], "total"],
             [[kind.replace("_", " "), *[f"{table[kind].get(c, 0):,}" for c in closers],
               f"{n:,}"] for kind, n in conns["by_end"].items()]),
            ("p", f"Who closed first: {closer_words(conns)}.", False)]
    if conns.get("zeek_conn_states"):
        out += [("p", "The same connections by Zeek's conn_state (Zeek's rules, for "
                      "comparison with a Zeek conn.log; pcapstate's own states above say "
                      "more, e.g. CLOSE_WAIT). Zeek's timers may end a connection where "
                      "pcapstate's goes on, so Zeek may count more:", False),
                ("table", ["conn_state", "connections"],
                 [[state, f"{n:,}"] for state, n in conns["zeek_conn_states"].items()])]

    top = result["findings"][:TOP_GROUPS]
    if top:
        out += [("h", 2, "Stuck endpoints by service"),
                ("table", ["state", "service", "side", "endpoints", "still stuck",
                           "in the state at capture end", "oldest", "how they ended",
                           "closed first by"],
                 [[f["state"], f["service"], f["role"], f"{f['count']:,}",
                   f"{f['still_open']:,}", f"{f.get('at_capture_end', f['still_open']):,}",
                   "before the capture (inferred)" if f.get("inferred") else seconds(f["oldest"]),
                   outcomes(f, "; "), closed_first(f, "")] for f in top])]
        if more := more_groups(result["findings"]):
            out.append(("p", _sentence(more), False))
        shown = [ex for f in top for ex in f["examples"][:5]  # a diagnosis shows CLOSE_WAIT
                 if "diagnoses" not in result or f["state"] != "CLOSE_WAIT"]
        out += [("h", 2, "The worst stuck connections")] if shown else []
        for ex in shown:
            out.append(("p", f"{ex['endpoint']} ({ex['role']}) with {ex['peer']}, "
                             f"connection {ex['conn_id']}: {evidence(ex)} "
                             "Wireshark display filter:", False))
            out.append(("code", wireshark_filter(ex["endpoint"], ex["peer"], ex["since"])))

    out += [("h", 2, "Time in each state"),
            ("p", _sentence(DURATION_NOTE), False),
            ("table", DURATION_COLUMNS, duration_rows(result))]
    if charts:
        out.append(("h", 2, "Charts"))
        out += [("img", name, title) for name, title in charts]
    return out


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&])")


def _md(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text).replace("\n", " ")


def _spans(text: str) -> list[tuple[str, bool]]:
    """A "text" block's words as (words, is code) pieces: code between backticks. Text
    whose backticks do not pair is words throughout."""
    parts = text.replace("\n", " ").split("`")
    if len(parts) % 2 == 0:
        return [(text, False)]
    return [(part, i % 2 == 1) for i, part in enumerate(parts) if part]


def markdown(report: list[Block], image_dir: str | None) -> str:
    """GitHub/GitLab/Jira-friendly Markdown; images by relative path under image_dir (None:
    no charts, for a report on standard output)."""
    out = []
    for b in report:
        if b[0] == "h":
            out.append("#" * b[1] + " " + _md(b[2]))
        elif b[0] == "p":
            out.append(f"**{_md(b[1])}**" if b[2] else _md(b[1]))
        elif b[0] == "table":
            out.append("| " + " | ".join(_md(h) for h in b[1]) + " |")
            out.append("|" + "---|" * len(b[1]))
            out += ["| " + " | ".join(_md(c) for c in row) + " |" for row in b[2]]
        elif b[0] == "text":  # a code span holds no backtick: _spans split on them
            out.append("".join(f"`{w}`" if code else _md(w) for w, code in _spans(b[1])))
        elif b[0] == "code":
            out.append("```\n" + b[1].replace("```", "` ` `") + "\n```")
        elif b[0] == "img":
            if image_dir is None:
                continue
            path = f"{image_dir}/{b[1]}" if image_dir else b[1]
            out.append(f"![{_md(b[2])}]({path.replace(' ', '%20')})")
        out.append("")
    return "\n".join(out)


_CSS = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; word-break: break-all; }
h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.verdict { font-weight: 600; background: #fff4f4; border-left: 4px solid #c44e52;
           padding: .6em .9em; }
.verdict.ok { background: #f3faf3; border-color: #55a868; }
table { border-collapse: collapse; margin: .6em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
td { word-break: break-word; } th { background: #f4f4f4; }
pre { background: #f6f6f6; padding: .5em; white-space: pre-wrap; word-break: break-all; }
code { background: #f6f6f6; padding: 0 .2em; }
img { max-width: 100%; border: 1px solid #eee; }
figure { margin: 1em 0; page-break-inside: avoid; }
@media print { body { margin: 0; max-width: none; } h2 { page-break-after: avoid; } }
"""


def html(report: list[Block], images: dict[str, bytes]) -> str:
    """One self-contained page: styles inline, charts as data: URLs, no script, nothing
    fetched from anywhere."""
    e = html_lib.escape
    title = next((b[2] for b in report if b[0] == "h" and b[1] == 1), "pcapstate report")
    ok = not any(b[0] == "p" and b[2] and not b[1].startswith("Nothing wrong") for b in report)
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{e(title)}</title><style>{_CSS}</style></head><body>"]
    for b in report:
        if b[0] == "h":
            out.append(f"<h{b[1]}>{e(b[2])}</h{b[1]}>")
        elif b[0] == "p":
            cls = f' class="verdict{" ok" if ok else ""}"' if b[2] else ""
            out.append(f"<p{cls}>{e(b[1])}</p>")
        elif b[0] == "table":
            out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in b[1]) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in b[2]]
            out.append("</table>")
        elif b[0] == "text":
            out.append("<p>" + "".join(f"<code>{e(w)}</code>" if code else e(w)
                                       for w, code in _spans(b[1])) + "</p>")
        elif b[0] == "code":
            out.append(f"<pre>{e(b[1])}</pre>")
        elif b[0] == "img" and b[1] in images:
            data = base64.b64encode(images[b[1]]).decode()
            out.append(f'<figure><img alt="{e(b[2])}" src="data:image/png;base64,{data}">'
                       f"<figcaption>{e(b[2])}</figcaption></figure>")
    out.append("</body></html>\n")
    return "\n".join(out)

