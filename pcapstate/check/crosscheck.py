"""The cross-check: one capture through both engines. Where the fast decoder and Wireshark's
dissectors disagree on a connection (its ends, closer or final states), or where
pcapstate's own retransmission and keep-alive counts differ from Wireshark's TCP analysis,
the connection is listed.

pcapstate's "retransmission" anomaly, plus its SYN, SYN/ACK and FIN retransmissions, is
compared with the segments Wireshark flags as a retransmission, fast retransmission,
spurious retransmission or out-of-order ("resent"); its keep-alives with Wireshark's.
"""

from collections.abc import Sequence
from typing import Any

from pcapstate.check.goldens import Key, connection_name, keyed
from pcapstate.settings import Settings

RESENT = ("retransmission", "syn_retransmitted", "synack_retransmitted", "fin_retransmitted")


def _seen(paths: list[str], settings: Settings | None, engine: str) -> dict[Key, Sequence[Any]]:
    """What is compared of each connection the engine finds, and no more (a record costs a
    few kB, this 200 bytes), by its 4-tuple and its instance on it."""
    from pcapstate.pipeline import analyze

    seen: list[tuple[Any, ...]] = []

    def keep(r: dict[str, Any]) -> None:
        a, ws = r["anomalies"], r.get("wireshark_analysis", {})
        seen.append((r["client"], r["server"], r["first_ts"], r["end"], r["closer"],
                     r["endpoints"]["client"]["final_state"],
                     r["endpoints"]["server"]["final_state"], sum(a.get(k, 0) for k in RESENT),
                     a.get("keep_alive", 0), ws.get("resent", 0), ws.get("keep_alive", 0)))

    analyze(paths, settings, on_record=keep, engine=engine)
    return keyed(seen)


def cross_check(paths: list[str], settings: Settings | None = None) -> dict[str, Any]:
    """Analyse with the fast and the tshark engines; every disagreement, in words."""
    fast, shark = _seen(paths, settings, "fast"), _seen(paths, settings, "tshark")
    out = []
    for key in sorted(set(fast) | set(shark), key=lambda k: ((fast.get(k) or shark[k])[2], k)):
        name = connection_name(key)
        if key not in shark:
            out.append(f"{name}: only the fast engine sees it")
        elif key not in fast:
            out.append(f"{name}: only the tshark engine sees it")
        else:
            a, b = fast[key], shark[key]
            for i, what in ((3, "end"), (4, "closer"), (5, "client final state"),
                            (6, "server final state")):
                if a[i] != b[i]:
                    out.append(f"{name}: {what} {a[i]} (fast), {b[i]} (tshark)")
            for ours, theirs, words in ((b[7], b[9], "segments sent again"),
                                        (b[8], b[10], "keep-alives")):
                if ours != theirs:
                    out.append(f"{name}: {words}: pcapstate {ours}, Wireshark {theirs}")
    both = [shark[k] for k in fast.keys() & shark.keys()]  # tshark's runs, both counts
    return {"connections": {"fast": len(fast), "tshark": len(shark)},
            "segments_sent_again": {"pcapstate": sum(b[7] for b in both),
                                    "wireshark": sum(b[9] for b in both)},
            "keep_alives": {"pcapstate": sum(b[8] for b in both),
                            "wireshark": sum(b[10] for b in both)},
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
