"""The cross-check: one capture through both engines. Where the fast decoder and Wireshark's
dissectors disagree on a connection (its ends, closer or final states), or where
pcapstate's own retransmission and keep-alive counts differ from Wireshark's TCP analysis,
the connection is listed.

pcapstate's "retransmission" anomaly, plus its SYN, SYN/ACK and FIN retransmissions, is
compared with the segments Wireshark flags as a retransmission, fast retransmission,
spurious retransmission or out-of-order ("resent"); its keep-alives with Wireshark's.
"""

from collections import Counter
from typing import Any

from pcapstate.settings import Settings

RESENT = ("retransmission", "syn_retransmitted", "synack_retransmitted", "fin_retransmitted")
Key = tuple[str, str, int]


def cross_check(paths: list[str], settings: Settings | None = None) -> dict[str, Any]:
    """Analyse with the fast and the tshark engines; every disagreement, in words."""
    from pcapstate.pipeline import analyze

    runs = {}
    for engine in ("fast", "tshark"):
        seen: dict[Key, tuple[Any, ...]] = {}
        count: Counter[tuple[str, str]] = Counter()

        def keep(r: dict[str, Any], seen: dict[Key, tuple[Any, ...]] = seen,
                 count: Counter[tuple[str, str]] = count) -> None:
            """What is compared, and no more: a record costs a few kB, this 200 bytes."""
            pair = (r["client"], r["server"])
            count[pair] += 1
            a, ws = r["anomalies"], r.get("wireshark_analysis", {})
            seen[(*pair, count[pair])] = (
                r["first_ts"], r["end"], r["closer"], r["endpoints"]["client"]["final_state"],
                r["endpoints"]["server"]["final_state"], sum(a.get(k, 0) for k in RESENT),
                a.get("keep_alive", 0), ws.get("resent", 0), ws.get("keep_alive", 0))

        analyze(paths, settings, on_record=keep, engine=engine)
        runs[engine] = seen
    fast, shark = runs["fast"], runs["tshark"]
    out = []
    totals = {"resent": [0, 0], "keep_alive": [0, 0]}
    for key in sorted(set(fast) | set(shark), key=lambda k: ((fast.get(k) or shark[k])[0], k)):
        name = f"{key[0]} -> {key[1]}" + (f" (instance {key[2]})" if key[2] > 1 else "")
        if key not in shark:
            out.append(f"{name}: only the fast engine sees it")
            continue
        if key not in fast:
            out.append(f"{name}: only the tshark engine sees it")
            continue
        a, b = fast[key], shark[key]
        for i, what in ((1, "end"), (2, "closer"), (3, "client final state"),
                        (4, "server final state")):
            if a[i] != b[i]:
                out.append(f"{name}: {what} {a[i]} (fast), {b[i]} (tshark)")
        for (ours, theirs), (what, words) in zip(
                ((b[5], b[7]), (b[6], b[8])),
                (("resent", "segments sent again"), ("keep_alive", "keep-alives")),
                strict=True):
            totals[what][0] += ours
            totals[what][1] += theirs
            if ours != theirs:
                out.append(f"{name}: {words}: pcapstate {ours}, Wireshark {theirs}")
    return {"connections": {"fast": len(fast), "tshark": len(shark)},
            "segments_sent_again": dict(zip(("pcapstate", "wireshark"), totals["resent"],
                                            strict=True)),
            "keep_alives": dict(zip(("pcapstate", "wireshark"), totals["keep_alive"],
                                    strict=True)),
            "disagreements": out}


def text(check: dict[str, Any]) -> str:
    c, r, k = check["connections"], check["segments_sent_again"], check["keep_alives"]
    lines = [f"Cross-check: {c['fast']:,} connections by the fast engine, {c['tshark']:,} by "
             f"tshark; segments sent again: pcapstate {r['pcapstate']:,}, Wireshark "
             f"{r['wireshark']:,}; keep-alives: pcapstate {k['pcapstate']:,}, Wireshark "
             f"{k['wireshark']:,}"]
    if check["disagreements"]:
        lines.append(f"  {len(check['disagreements']):,} disagreements:")
        lines += [f"    {d}" for d in check["disagreements"]]
    else:
        lines.append("  the engines agree on every connection")
    return "\n".join(lines) + "\n"
