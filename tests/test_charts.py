"""Charts people paste into a ticket: durations on axes in time units, no overlapping
labels, every panel labelled, censored stays apart and counted, stays of <= 1 us counted
but not drawn, every state readable over time, the CLOSE_WAIT timeline saying how many it
shows, and each chart naming its capture. Drawn from real results of the samples and of a
crafted leak."""

import importlib.util
import math
import re
from pathlib import Path
from typing import Any

import matplotlib
import pytest

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.patches import StepPatch  # noqa: E402

from pcapstate.cli import main  # noqa: E402
from pcapstate.pipeline import analyze  # noqa: E402
from pcapstate.render import charts  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
CAPTURES = {"close_wait_leak": ["close_wait_leak.pcap"], "mid_stream": ["mid_stream.pcap"],
            "lossy": ["lossy.pcap"], "rotated": [f"rotated-{i}.pcap" for i in range(4)]}
pytestmark = pytest.mark.skipif(not (SAMPLES / "close_wait_leak.pcap").exists(),
                                reason="kernel samples not made")
TIME_LABEL = re.compile(r"^\d+ (µs|ms|s|min|h|d|y)$")
LEAKS = 14  # crafted connections left in CLOSE_WAIT, more than a findings group keeps


def write_leaks(path: Path) -> None:
    """LEAKS clients of 192.0.2.1:5001, one every half second: handshake, then the client's
    FIN, acknowledged; the server never closes. One client ACK 30 s in ends the capture, so
    every server endpoint is stuck in CLOSE_WAIT (over 10 s)."""
    spec = importlib.util.spec_from_file_location("make_floods", ROOT / "bench/make_floods.py")
    assert spec is not None and spec.loader is not None
    mf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mf)
    c, s = mf.address(198, 51, 100, 7), int.from_bytes(mf.SERVER, "big")
    rows = []
    for i in range(LEAKS):
        t, cp = mf.START + i / 2, 40000 + i
        rows += [(t, c, s, cp, 5001, 1000, 0, mf.SYN),
                 (t + 0.001, s, c, 5001, cp, 5000, 1001, mf.SYN | mf.ACK),
                 (t + 0.002, c, s, cp, 5001, 1001, 5001, mf.ACK),
                 (t + 0.010, c, s, cp, 5001, 1001, 5001, mf.FIN | mf.ACK),
                 (t + 0.011, s, c, 5001, cp, 5001, 1002, mf.ACK)]
    rows.append((mf.START + 30, c, s, 40000, 5001, 1002, 5001, mf.ACK))
    path.write_bytes(mf.HEADER + mf.sorted_frames(mf.columns(rows)))


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, dict[str, Any]]:
    """The analysis of each capture, by name."""
    out = {name: analyze([str(SAMPLES / f) for f in files]) for name, files in CAPTURES.items()}
    leaks = tmp_path_factory.mktemp("leaks") / "leaks.pcap"
    write_leaks(leaks)
    out["leaks"] = analyze([str(leaks)])
    return out


@pytest.fixture(scope="module")
def figures(results) -> Any:
    """Each capture's charts, by name then file name: (title, figure), drawn once."""
    out = {name: {chart: (title, draw()) for chart, title, draw in charts.charts(result)}
           for name, result in results.items()}
    for listed in out.values():
        for _, fig in listed.values():
            fig.canvas.draw()
    yield out
    plt.close("all")


def drawn(fig: Any) -> list[Any]:
    """The figure's visible panels."""
    return [ax for ax in fig.axes if ax.get_visible()]


def panel(fig: Any, state: str) -> Any:
    return next(ax for ax in drawn(fig) if ax.get_title(loc="left") == state)


def legend_texts(ax: Any) -> list[str]:
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def bars(ax: Any) -> dict[str, float]:
    """Endpoints drawn in a histogram panel, by legend label (each kind is stacked on the
    ones before it)."""
    patches = [p for p in ax.patches if isinstance(p, StepPatch)]
    labels = legend_texts(ax)
    return {label: float((p.get_data().values - p.get_data().baseline).sum())
            for p, label in zip(patches, labels, strict=False)}


def test_duration_axes_read_in_time_units(figures):
    """Every histogram panel's ticks are durations in µs, ms, s, min, h; at least two of
    them, over at least two decades, even where every stay lasted about as long (the five
    FIN_WAIT_1 of the leak, within 2 ms of 43 ms)."""
    for name, listed in figures.items():
        for ax in drawn(listed["durations.png"][1]):
            labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
            assert len(labels) >= 2 and all(TIME_LABEL.match(t) for t in labels), (name, labels)
            lo, hi = ax.get_xlim()
            assert math.log10(hi / lo) >= 2, (name, ax.get_title(loc="left"))
    ax = panel(figures["close_wait_leak"]["durations.png"][1], "FIN_WAIT_1")
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "5 ms", "10 ms", "20 ms", "50 ms", "100 ms", "200 ms", "500 ms"]


def test_no_tick_labels_overlap(figures):
    """On every axes of every chart, no two tick labels overlap."""
    for name, listed in figures.items():
        for chart, (_, fig) in listed.items():
            for ax in drawn(fig):
                for ticks in (ax.get_xticklabels(which="both"),
                              ax.get_yticklabels(which="both")):
                    boxes = sorted((t.get_window_extent() for t in ticks if t.get_text()),
                                   key=lambda box: (box.x0, box.y0))
                    for a, b in zip(boxes, boxes[1:], strict=False):
                        assert not a.overlaps(b), (name, chart, ax.get_title(loc="left"))


def test_every_panel_is_labelled(results, figures):
    """Each panel of every chart has its x axis label, and each histogram and timeline
    panel its state and its y axis label."""
    for name, listed in figures.items():
        states = results[name]["durations"] | results[name]["timeline"]["states"]
        for chart, (_, fig) in listed.items():
            for ax in drawn(fig):
                assert ax.get_xlabel(), chart
                if chart in ("durations.png", "states_over_time.png"):
                    assert ax.get_ylabel() == "endpoints"
                    assert ax.get_title(loc="left") in states
    ax = panel(figures["lossy"]["durations.png"][1], "ESTABLISHED")
    assert ax.get_xlabel() == "time in ESTABLISHED (log scale)"


def test_each_chart_names_what_it_shows_and_the_capture(figures, tmp_path):
    """A chart pasted alone still says what it is and of which capture: its title names
    both, a set of rotated files by its first and last; `--plots` writes those figures."""
    for name, listed in figures.items():
        capture = {"rotated": "rotated-0.pcap … rotated-3.pcap (4 files)"}.get(
            name, f"{name}.pcap")
        for title, fig in listed.values():
            assert fig.texts[0].get_text() == f"{title}: {capture}"
            assert fig.texts[1].get_text().startswith("Capture from 20")
    plots = tmp_path / "plots"
    assert main(["analyze", str(SAMPLES / "close_wait_leak.pcap"), "--plots", str(plots),
                 "-q"]) == 0
    assert sorted(p.name for p in plots.iterdir()) == sorted(figures["close_wait_leak"])
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots.iterdir())


def test_close_wait_timeline_says_how_many_it_shows(figures):
    """The findings keep each group's 10 longest: of 14 stuck endpoints the chart draws
    10, longest first, and says so and how they were chosen; where it draws them all, it
    says that too."""
    fig = figures["leaks"]["close_wait.png"][1]
    ax = drawn(fig)[0]
    texts = " ".join(t.get_text() for t in fig.texts)
    assert f"10 of {LEAKS} stuck endpoints shown: the 10 longest of each group" in texts
    assert len(ax.get_yticklabels()) == 10 and len(ax.patches) == 10
    widths = [p.get_width() for p in ax.patches]
    assert widths == sorted(widths, reverse=True)
    fig = figures["close_wait_leak"]["close_wait.png"][1]
    assert "5 of 5 stuck endpoints shown." in " ".join(t.get_text() for t in fig.texts)


def test_stays_of_a_microsecond_are_counted_not_drawn(results, figures):
    """A FIN+ACK answered in one segment makes a 0 µs FIN_WAIT_2: those stays are not a
    bar but a count in the panel's legend; the others are drawn, and together they make the
    state's count."""
    assert results["rotated"]["durations"]["FIN_WAIT_2"]["histogram"] == {"complete": {"-1": 4}}
    fig = figures["rotated"]["durations.png"][1]
    ax = panel(fig, "FIN_WAIT_2")
    assert legend_texts(ax) == ["4 at ≤ 1 µs, not drawn"] and bars(ax) == {}
    assert [t.get_text() for t in ax.texts] == ["nothing longer than 1 µs"]
    assert any("not drawn" in t.get_text() for t in fig.texts)  # how they are counted
    for name, result in results.items():
        fig = figures[name]["durations.png"][1]
        for state, d in result["durations"].items():
            tiny = sum(h.get("-1", 0) for h in d["histogram"].values())
            ax = panel(fig, state)
            assert sum(bars(ax).values()) == d["count"] - tiny, (name, state)
            assert (f"{tiny:,} at ≤ 1 µs, not drawn" in legend_texts(ax)) == bool(tiny)


def test_censored_stays_are_apart_and_counted(figures):
    """A capture that began late: both ESTABLISHED endpoints were already in it, drawn
    hatched, apart from complete stays, and counted in the panel's legend; the figure's
    legend says what that means. Stays still going at capture end likewise."""
    fig = figures["mid_stream"]["durations.png"][1]
    ax = panel(fig, "ESTABLISHED")
    assert bars(ax) == {"2 from before": 2.0}
    assert ax.patches[0].get_hatch() == charts.CENSOR_STYLE["left"][3]
    assert bars(panel(fig, "FIN_WAIT_1")) == {"1 complete": 1.0}
    assert bars(panel(fig, "TIME_WAIT")) == {"1 to the end": 1.0}
    meanings = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any(m.startswith("from before: already in this state when the capture began")
               for m in meanings)
    fig = figures["close_wait_leak"]["durations.png"][1]
    assert bars(panel(fig, "CLOSE_WAIT")) == {"5 to the end": 5.0}
    assert not any("from before" in t.get_text() for t in fig.legends[0].get_texts())


def test_every_state_is_readable_over_time(results, figures):
    """A panel per state of the timeline, each on its own linear scale up to its peak: a
    state of a few endpoints is not flattened by a crowded one."""
    for name, result in results.items():
        states = result["timeline"]["states"]
        axes = drawn(figures[name]["states_over_time.png"][1])
        assert [ax.get_title(loc="left") for ax in axes] == list(states)
        for ax, counts in zip(axes, states.values(), strict=True):
            lo, hi = ax.get_ylim()
            assert ax.get_yscale() == "linear" and lo == 0 and max(counts) <= hi
            assert hi <= 1.2 * max(max(counts), 1)
            assert ax.get_title(loc="right") == f"peak {max(counts):,}, {counts[-1]:,} at the end"
    assert max(results["leaks"]["timeline"]["states"]["CLOSE_WAIT"]) == LEAKS
