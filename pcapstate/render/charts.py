"""The report's charts (matplotlib, headless), drawn from a result dict (docs/json.md).

Each chart aggregates: histograms and per-bin counts, whatever the number of connections;
only the stuck-connection timeline draws connections one by one, and it draws the worst
few that the findings keep. Each chart says what it shows and for which capture, so that a
PNG pasted alone into a ticket still reads.
"""

import io
import math
import os
from collections.abc import Callable
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator  # noqa: E402

from pcapstate.render.text import outcome_words  # noqa: E402
from pcapstate.vocab import State  # noqa: E402
from pcapstate.words import count, seconds, when  # noqa: E402

# Complete durations and the kinds of censoring: the name a panel's counts use (as the
# report's table does), what it means, colour and hatch.
CENSOR_STYLE = {
    "complete": ("complete", "complete: entered and left within the capture", "#4c72b0", ""),
    "left": ("from before", "from before: already in this state when the capture began "
             "(a lower bound)", "#55a868", "////"),
    "right": ("to the end", "to the end: still in it at capture end (a lower bound)",
              "#dd8452", "\\\\\\\\"),
    "both": ("whole capture", "whole capture: in it from before the capture began to its "
             "end", "#8172b3", "xxx"),
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
MAX_BARS = 40  # stuck connections drawn one by one
DRAW_PER_DECADE = 10  # histogram bars a decade of time
# Duration axis ticks, in the units people say them in: 1-2-5 steps for an axis of less
# than 3 decades, else powers of ten (and 1 min, 10 min, 1 h, 1 d ...); a panel keeps
# those far enough apart not to overlap.
FINE_TICKS = [(m * unit, f"{m} {name}") for unit, name, steps in (
    (1e-6, "µs", (1, 2, 5, 10, 20, 50, 100, 200, 500)),
    (1e-3, "ms", (1, 2, 5, 10, 20, 50, 100, 200, 500)), (1, "s", (1, 2, 5, 10, 20, 30)),
    (60, "min", (1, 2, 5, 10, 20, 30)), (3600, "h", (1, 2, 6, 12)),
    (86400, "d", (1, 2, 5, 10, 20, 50, 100)), (3.156e7, "y", (1, 10, 100, 1000)))
    for m in steps]
COARSE_TICKS = [t for t in FINE_TICKS if t[1].split()[0] in ("1", "10", "100", "1000")]
TINY_NOTE = ("Stays of ≤ 1 µs (a FIN+ACK answering a FIN in one segment makes a 0 µs "
             "FIN_WAIT_2) are counted in each panel's legend, not drawn.")
HEADER = 0.32  # inches: the title line; each note line and legend row adds LINE
LINE = 0.19
_ORDER = [s.value for s in State]


#: Every chart's file name
DURATIONS_PNG, OVER_TIME_PNG, CLOSE_WAIT_PNG, ENDINGS_PNG = NAMES = (
    "durations.png", "states_over_time.png", "close_wait.png", "endings.png")


def charts(result: dict[str, Any]) -> list[tuple[str, str, Callable[[], Figure]]]:
    """(file name, title, drawing function) for each chart this result has data for."""
    out = []
    if _drawn_states(result):
        out.append((DURATIONS_PNG, "Time spent in each state", lambda: durations(result)))
    if result["timeline"]["states"]:
        out.append((OVER_TIME_PNG, "Endpoints in each state over the capture",
                    lambda: states_over_time(result)))
    if any(f["state"] == "CLOSE_WAIT" for f in result["findings"]):
        out.append((CLOSE_WAIT_PNG, "Connections stuck in CLOSE_WAIT",
                    lambda: close_wait_timeline(result)))
    if result["connections"]["total"] and result["connections"]["by_end_and_closer"]:
        out.append((ENDINGS_PNG, "How connections ended, by who closed first",
                    lambda: endings(result)))
    return out


def png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def capture_name(result: dict[str, Any]) -> str:
    """The capture's file name, or its first and last for a set of files."""
    names = [os.path.basename(f["path"]) if f["path"] != "-" else "standard input"
             for f in result.get("inputs") or []]
    if len(names) > 2:
        return f"{names[0]} … {names[-1]} ({len(names)} files)"
    return " + ".join(names) or "capture"


def _figure(panels: int, cols: int, row_height: float, lines: int) -> tuple[Figure, list[Any]]:
    """A figure of `panels` panels, `cols` a row (those left over in the last row hidden),
    with room above them for the title, the capture's time and `lines` more lines of notes
    and legend (_finish)."""
    rows = math.ceil(panels / cols)
    height = rows * row_height + HEADER + LINE * (lines + 1) + 0.1
    fig, axes = plt.subplots(rows, cols, figsize=(11, height), squeeze=False)
    for ax in axes.flat[panels:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:panels])


def _finish(fig: Figure, title: str, result: dict[str, Any], notes: list[str],
            legend: tuple[list[Any], list[str]] | None = None, ncol: int = 2) -> Figure:
    """Title (naming the capture), notes and a legend above the panels, then the layout."""
    height = fig.get_figheight()
    cap = result.get("capture") or {}
    fig.text(0.01, 1 - 0.08 / height, f"{title}: {capture_name(result)}", va="top",
             fontsize=12, fontweight="bold")
    notes = [f"Capture from {when(cap.get('first_ts'))}, {seconds(cap.get('duration'))} "
             "long.", *notes]
    y = 1 - (HEADER + 0.02) / height
    for note in notes:
        fig.text(0.01, y, note, va="top", fontsize=8.5, color="#333333")
        y -= LINE / height
    if legend and legend[0]:
        fig.legend(*legend, loc="upper left", bbox_to_anchor=(0.005, y + 0.03 / height),
                   ncol=ncol, fontsize=8, frameon=False, borderaxespad=0)
        y -= LINE * math.ceil(len(legend[0]) / ncol) / height
    fig.tight_layout(rect=(0, 0, 1, y), h_pad=1.2, w_pad=2)
    return fig


def _drawn_states(result: dict[str, Any]) -> list[str]:
    """The states with durations to draw (a count, and bins that hold them)."""
    return [s for s, d in result["durations"].items()
            if d["count"] and any(d["histogram"].values())]


def _time_ticks(ax: Any, lo: float, hi: float) -> None:
    """Duration ticks in readable units over [lo, hi] seconds, at least a tenth of the
    axis apart."""
    span = math.log10(hi / lo)
    kept: list[tuple[float, str]] = []
    for value, label in FINE_TICKS if span < 3 else COARSE_TICKS:
        if lo <= value <= hi and (not kept or math.log10(value / kept[-1][0]) >= span / 10):
            kept.append((value, label))
    ax.set_xticks([v for v, _ in kept], [label for _, label in kept])
    ax.xaxis.set_minor_locator(NullLocator())  # a log axis' minor ticks cost much to draw


def _count_axis(ax: Any, peak: float, room: float, log: bool) -> None:
    """A count axis up to `peak` (logarithmic if `log` and beyond 50), tall enough that the
    bars keep below the top `room` of it (for the legend); ticks are whole numbers up to the
    peak."""
    peak = max(peak, 1)
    if log and peak > 50:
        ax.set_yscale("log")
        ax.set_ylim(0.5, 0.5 * (peak / 0.5) ** (1 / (1 - room)))
        ticks = [10**k for k in range(int(math.log10(peak)) + 1)]
        ticks = ticks[:: max(1, math.ceil(len(ticks) / 5))]
    else:
        ax.set_ylim(0, peak / (1 - room))
        ticks = [t for t in MaxNLocator(4, integer=True).tick_values(0, peak) if 0 <= t <= peak]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.yaxis.set_minor_locator(NullLocator())


def durations(result: dict[str, Any]) -> Figure:
    """One panel per state: how many endpoints stayed how long (log time), stacked by
    censoring; stays of <= 1 us are counted in the legend, not drawn."""
    states = _drawn_states(result)
    seen = {c for s in states for c, h in result["durations"][s]["histogram"].items()
            if any(int(b) >= 0 for b in h)}
    styles = [c for c in CENSOR_STYLE if c in seen]
    fig, axes = _figure(len(states), 2 if len(states) > 1 else 1, 2.3,
                        2 + math.ceil(len(styles) / 2))
    per = max(int(result["settings"]["histogram_bins_per_decade"]) // DRAW_PER_DECADE, 1)
    for ax, state in zip(axes, states, strict=True):
        _duration_panel(ax, state, result["durations"][state], per, per * DRAW_PER_DECADE)
    handles = [Patch(facecolor=CENSOR_STYLE[c][2], hatch=CENSOR_STYLE[c][3],
                     edgecolor="white", linewidth=0) for c in styles]
    return _finish(fig, "Time spent in each state", result, [
        "Each panel: how many endpoints stayed how long in one state (log time scale), "
        "stacked by whether the capture saw the stay begin and end.", TINY_NOTE],
        (handles, [CENSOR_STYLE[c][1] for c in styles]))


def _duration_panel(ax: Any, state: str, d: dict[str, Any], per: int, decade: int) -> None:
    """One state's histogram: bins of the result (`decade` a decade) merged `per` at a time
    into bars, one colour and hatch for each kind of censoring, stacked."""
    hist = {c: {int(b): n for b, n in h.items()} for c, h in d["histogram"].items()}
    tiny = sum(h.get(-1, 0) for h in hist.values())
    keys = [b // per for h in hist.values() for b in h if b >= 0]
    lo, hi = (min(keys), max(keys) + 1) if keys else (0, 2 * DRAW_PER_DECADE)
    edges = 1e-6 * 10.0 ** (np.arange(lo, hi + 1) * per / decade)
    bottom = np.zeros(hi - lo)
    handles, labels = [], []
    for censor, (short, _, colour, hatch) in CENSOR_STYLE.items():
        counts = np.zeros(hi - lo)
        for b, n in hist.get(censor, {}).items():
            if b >= 0:
                counts[b // per - lo] += n
        if counts.any():
            handles.append(ax.stairs(bottom + counts, edges, baseline=bottom.copy(), fill=True,
                                     facecolor=colour, hatch=hatch, edgecolor="white",
                                     linewidth=0))
            labels.append(f"{counts.sum():,.0f} {short}")
            bottom += counts
    if tiny:
        handles.append(Line2D([], [], linestyle="none"))
        labels.append(f"{tiny:,} at ≤ 1 µs, not drawn")
    _count_axis(ax, float(bottom.max()), min(0.6, 0.08 + 0.1 * len(labels)), True)
    if not keys:
        ax.text(0.5, 0.4, "nothing longer than 1 µs", transform=ax.transAxes, ha="center",
                color="#666666", fontsize=9)
    span = math.log10(edges[-1] / edges[0])  # at least two decades and a margin
    pad = 10 ** (max(0.0, 2 - span) / 2 + 0.1)
    x0, x1 = edges[0] / pad, edges[-1] * pad
    shift = max(1.0, 10**-6.1 / x0)  # nothing is drawn below 1 us
    ax.set_xscale("log")
    ax.set_xlim(x0 * shift, x1 * shift)
    _time_ticks(ax, x0 * shift, x1 * shift)
    ax.legend(handles, labels, loc="upper right", fontsize=7.5, frameon=False,
              handlelength=1.2, borderaxespad=0.3)
    _label(ax, state, count(d["count"], "endpoint"), f"time in {state} (log scale)")
    ax.grid(axis="y", alpha=0.25)


def _label(ax: Any, state: str, note: str, xlabel: str) -> None:
    """A state's panel's titles (the state, and `note` on the right) and axis labels."""
    ax.set_title(state, loc="left", fontsize=10, fontweight="bold")
    ax.set_title(note, loc="right", fontsize=8)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("endpoints", fontsize=8)
    ax.tick_params(labelsize=8)


def _time_unit(span: float) -> tuple[float, str]:
    """(seconds in the unit, its name): the unit that reads best over `span` seconds."""
    return ((3600, "hours") if span >= 3 * 3600 else (60, "minutes") if span >= 180 else
            (1, "seconds") if span >= 1 else (1e-3, "milliseconds"))


def states_over_time(result: dict[str, Any]) -> Figure:
    """How many endpoints sit in each state at each moment, a panel per state, each with
    its own scale: a leak is a line that climbs."""
    tl = result["timeline"]
    states = sorted(tl["states"], key=_ORDER.index)
    fig, axes = _figure(len(states), 3 if len(states) > 4 else min(len(states), 2), 1.9, 2)
    width = tl["bin_seconds"]
    span = width * max(len(c) for c in tl["states"].values())
    unit, name = _time_unit(span)
    for ax, state in zip(axes, states, strict=True):
        counts = tl["states"][state]
        edges = np.arange(len(counts) + 1) * (width / unit)
        colour = STATE_COLOURS.get(state, "#4c72b0")
        ys = [*counts, counts[-1]]  # a line and a fill, not stairs: quicker to lay out
        ax.fill_between(edges, ys, step="post", color=colour, alpha=0.3, linewidth=0)
        ax.step(edges, ys, where="post", color=colour, linewidth=1.2)
        ax.plot(edges[-1], counts[-1], "o", color=colour, markersize=3)  # the count at end
        ax.set_xlim(0, span / unit * 1.02)
        _count_axis(ax, float(max(counts)), 0.12, False)
        _label(ax, state, f"peak {max(counts):,}, {counts[-1]:,} at the end",
               f"{name} since the capture began")
        ax.grid(alpha=0.25)
    return _finish(fig, "Endpoints in each state over the capture", result, [
        f"Endpoints in each state at the end of each {seconds(width)} step, each panel on "
        "its own scale; a stay shorter than a step may not show."])


def close_wait_timeline(result: dict[str, Any]) -> Figure:
    """A bar per connection stuck in CLOSE_WAIT (the worst the findings kept), from entering
    it to the capture end or to how it ended, grouped by service; it says how many of the
    stuck ones it shows."""
    start = result["capture"]["first_ts"] or 0.0
    groups = [f for f in result["findings"] if f["state"] == "CLOSE_WAIT"]
    rows = [ex for f in groups for ex in f["examples"]][:MAX_BARS]
    total = sum(f["count"] for f in groups)
    span = max(result["capture"]["duration"], 1e-3)
    unit, name = _time_unit(span)
    outcomes = sorted({ex["outcome"] for ex in rows})
    handles = [Patch(color=OUTCOME_COLOURS.get(o, "#4c72b0")) for o in outcomes]
    labels = [outcome_words(o) for o in outcomes]
    if any(ex.get("inferred") for ex in rows):
        handles.append(Patch(facecolor="#999999", hatch="////", edgecolor="white", linewidth=0))
        labels.append("inferred: its peer had closed before the capture began")
    fig, (ax,) = _figure(1, 1, 1.0 + 0.3 * len(rows), 2 + math.ceil(len(labels) / 4))
    for y, ex in enumerate(rows):
        colour = OUTCOME_COLOURS.get(ex["outcome"], "#4c72b0")
        ax.barh(y, ex["duration"] / unit, left=(ex["since"] - start) / unit, color=colour,
                height=0.6, hatch="////" if ex.get("inferred") else "", edgecolor="white",
                linewidth=0)
        inside = ex["duration"] > span / 8  # the bar's length, in it or after it
        x = ex["since"] - start + (0 if inside else ex["duration"])
        ax.annotate(f" {seconds(ex['duration'])}", (x / unit, y), va="center", fontsize=7.5,
                    color="white" if inside else "black",
                    fontweight="bold" if inside else "normal",
                    bbox={"facecolor": colour, "linewidth": 0, "pad": 0.5} if inside else None)
    ax.set_yticks(range(len(rows)), [f"{ex['endpoint']}  (peer {ex['peer']})" for ex in rows],
                  fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, span / unit)
    ax.set_xlabel(f"{name} since the capture began", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    limit = (result.get("settings") or {}).get("stuck_after", {}).get("CLOSE_WAIT")
    kept = max(len(f["examples"]) for f in groups)
    how = f"{len(rows)} of {count(total, 'stuck endpoint')} shown"
    if len(rows) < total:
        how += (f": the {kept} longest of each group (service), as the findings keep them"
                + (f", {MAX_BARS} at most" if len(rows) == MAX_BARS else ""))
    return _finish(fig, "Connections stuck in CLOSE_WAIT", result, [
        how + ".", f"Stuck: in CLOSE_WAIT for over {limit or 0:g} s (the peer closed, the "
        "application did not). A bar runs from the peer's FIN to the capture end or to how "
        "the stretch ended."], (handles, labels), ncol=4)


def endings(result: dict[str, Any]) -> Figure:
    """A bar per end kind, split by who closed first."""
    table = result["connections"]["by_end_and_closer"]
    kinds = list(table)
    fig, (ax,) = _figure(1, 1, 1.0 + 0.45 * len(kinds), 2)
    left = [0] * len(kinds)
    handles, labels = [], []
    for who, label, colour in CLOSERS:
        counts = [table[k].get(who, 0) for k in kinds]
        if any(counts):
            handles.append(ax.barh(range(len(kinds)), np.array(counts, float),
                                   left=np.array(left, float), color=colour, height=0.6))
            labels.append(label)
            left = [a + b for a, b in zip(left, counts, strict=True)]
    for y, total in enumerate(left):
        ax.annotate(f" {total:,}", (total, y), va="center", fontsize=8)
    ax.set_yticks(range(len(kinds)), [k.replace("_", " ") for k in kinds], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, float(max(*left, 1)) * 1.12)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_xlabel("connections", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    return _finish(fig, "How connections ended, by who closed first", result, [
        f"{count(sum(left), 'connection')}, by how each ended and which side closed first."],
        (handles, labels), ncol=4)
