"""The report's charts (matplotlib, headless), drawn from a result dict (docs/json.md).

Each chart aggregates: histograms and per-bin counts, whatever the number of connections;
only the stuck-connection timeline draws connections one by one, and it draws the worst
few that the findings keep.
"""

import io
from collections.abc import Callable
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from pcapstate.render.text import outcome_words  # noqa: E402
from pcapstate.vocab import State  # noqa: E402

# Complete durations and the two kinds of censoring, as the legend names them.
CENSOR_STYLE = {
    "complete": ("complete", "#4c72b0"),
    "right": ("right-censored: still in it at capture end (a lower bound)", "#dd8452"),
    "left": ("left-censored: began before the capture (a lower bound)", "#55a868"),
    "both": ("censored both ways: spans the whole capture", "#8172b3"),
}
STATE_COLOURS = {
    "ESTABLISHED": "#4c72b0", "CLOSE_WAIT": "#c44e52", "TIME_WAIT": "#8c8c8c",
    "FIN_WAIT_2": "#dd8452", "FIN_WAIT_1": "#937860", "LAST_ACK": "#8172b3",
    "SYN_SENT": "#55a868", "SYN_RCVD": "#64b5cd", "CLOSING": "#da8bc3",
}
CLOSERS = [("client", "client closed first", "#4c72b0"),
           ("server", "server closed first", "#c44e52"),
           ("both", "both at once", "#8172b3"), ("none", "nobody closed", "#8c8c8c")]
OUTCOME_COLOURS = {"open": "#c44e52", "reset_by_peer": "#dd8452", "reset_by_self": "#937860"}
# States drawn over time whatever their counts; the others only when they matter (5% of the
# busiest state's peak), so that the transient ones do not blur the picture.
ALWAYS_SHOWN = ("ESTABLISHED", "CLOSE_WAIT", "TIME_WAIT", "FIN_WAIT_2")
MAX_BARS = 40  # stuck connections drawn one by one
_DRAW_PER_DECADE = 10


def charts(result: dict[str, Any]) -> list[tuple[str, str, Callable[[], Figure]]]:
    """(file name, title, drawing function) for each chart this result has data for."""
    out = []
    if _drawn_states(result):
        out.append(("durations.png", "Time spent in each state", lambda: durations(result)))
    if result["timeline"]["states"]:
        out.append(("states_over_time.png", "Endpoints in each state over the capture",
                    lambda: states_over_time(result)))
    if any(f["state"] == "CLOSE_WAIT" for f in result["findings"]):
        out.append(("close_wait.png", "Connections stuck in CLOSE_WAIT",
                    lambda: close_wait_timeline(result)))
    if result["connections"]["total"] and result["connections"]["by_end_and_closer"]:
        out.append(("endings.png", "How connections ended, by who closed first",
                    lambda: endings(result)))
    return out


def png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def durations(result: dict[str, Any]) -> Figure:
    """One panel per state: a log-time histogram of the endpoints (log count), censored
    durations drawn apart from complete ones."""
    states = _drawn_states(result)
    cols = 2 if len(states) > 1 else 1
    rows = (len(states) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(11, 2.4 * rows + 0.8), squeeze=False)
    for ax, state in zip(axes.flat, states, strict=False):
        hist = result["durations"][state]["histogram"]
        step = result["settings"]["histogram_bins_per_decade"] // _DRAW_PER_DECADE
        drawn = [max(int(b), 0) // step for h in hist.values() for b in h]  # bin -1: <= 1us
        lo, hi = min(drawn), max(drawn) + 1
        edges = [1e-6 * 10 ** (k / _DRAW_PER_DECADE) for k in range(lo, hi + 1)]
        for censor, (label, colour) in CENSOR_STYLE.items():
            counts = [0] * (hi - lo)
            for b, n in hist.get(censor, {}).items():
                counts[max(int(b), 0) // step - lo] += n
            if any(counts):  # overlaid, not stacked: a log scale keeps a few visible
                ax.stairs(counts, edges, baseline=0.5, fill=True, color=colour, alpha=0.75,
                          label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(bottom=0.5)
        ax.set_title(state, fontsize=10, loc="left")
        ax.set_ylabel("endpoints", fontsize=8)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(states):]:
        ax.set_visible(False)
    axes.flat[len(states) - 1].set_xlabel("seconds (log scale)", fontsize=8)
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    fig.legend(list(handles.values()), list(handles), loc="upper center", ncol=2, fontsize=8,
               frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (2.4 * rows + 0.8)))
    return fig


def _drawn_states(result: dict[str, Any]) -> list[str]:
    """The states with durations to draw (a count, and bins that hold them)."""
    return [s for s, d in result["durations"].items()
            if d["count"] and any(d["histogram"].values())]


def states_over_time(result: dict[str, Any]) -> Figure:
    """How many endpoints sit in each state at each moment: a leak is a line that climbs."""
    tl = result["timeline"]
    fig, ax = plt.subplots(figsize=(11, 4))
    order = [s.value for s in State]
    peak = max(max(c) for c in tl["states"].values())
    shown = [s for s in tl["states"] if s in ALWAYS_SHOWN or max(tl["states"][s]) >= peak / 20]
    for state in sorted(shown, key=order.index):
        counts = tl["states"][state]
        xs = [i * tl["bin_seconds"] for i in range(1, len(counts) + 1)]
        ax.step([0.0, *xs], [counts[0], *counts], where="post", label=state,
                color=STATE_COLOURS.get(state), linewidth=2 if state == "CLOSE_WAIT" else 1.2)
    ax.set_xlabel("seconds since the capture started")
    ax.set_ylabel("endpoints in the state")
    ax.set_yscale("symlog", linthresh=10)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, ncol=3, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def close_wait_timeline(result: dict[str, Any]) -> Figure:
    """A bar per connection stuck in CLOSE_WAIT (the worst the findings kept), from entering
    it to the capture end or to how it ended, grouped by service."""
    start = result["capture"]["first_ts"]
    rows = [(f["service"], ex) for f in result["findings"] if f["state"] == "CLOSE_WAIT"
            for ex in f["examples"]][:MAX_BARS]
    fig, ax = plt.subplots(figsize=(11, 1.2 + 0.32 * len(rows)))
    labels = []
    for y, (service, ex) in enumerate(rows):
        colour = OUTCOME_COLOURS.get(ex["outcome"], "#4c72b0")
        ax.barh(y, ex["duration"], left=ex["since"] - start, color=colour, height=0.6)
        labels.append(f"{service}  (peer {ex['peer']})")
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(result["capture"]["duration"], 1e-3))
    ax.set_xlabel("seconds since the capture started")
    seen = sorted({ex["outcome"] for _, ex in rows})
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=OUTCOME_COLOURS.get(o, "#4c72b0"))
                       for o in seen],
              labels=[outcome_words(o) for o in seen], fontsize=8, loc="lower left",
              bbox_to_anchor=(0, 1), ncol=3, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def endings(result: dict[str, Any]) -> Figure:
    """A bar per end kind, split by who closed first."""
    table = result["connections"]["by_end_and_closer"]
    kinds = list(table)
    fig, ax = plt.subplots(figsize=(11, 1.2 + 0.45 * len(kinds)))
    left = [0] * len(kinds)
    for who, label, colour in CLOSERS:
        counts = [table[k].get(who, 0) for k in kinds]
        if any(counts):
            ax.barh(range(len(kinds)), counts, left=left, color=colour, label=label,
                    height=0.6)
            left = [a + b for a, b in zip(left, counts, strict=True)]
    for y, total in enumerate(left):
        ax.annotate(f" {total:,}", (total, y), va="center", fontsize=8)
    ax.set_yticks(range(len(kinds)), [k.replace("_", " ") for k in kinds], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, max(*left, 1) * 1.12)
    ax.set_xlabel("connections")
    if any(left):
        ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0, 1), ncol=4, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig
