"""The state timeline: counts per bin match a direct count, whatever the order intervals
arrive in and however often the bins coarsen; on a kernel capture it ends where ss does."""

import random
from pathlib import Path

import pytest

from pcapstate.derive.timeline import BINS, FIRST_WIDTH, Timeline, bin_of
from pcapstate.pipeline import analyze
from pcapstate.vocab import State

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def add(t: Timeline, state: State, start: float, stop: float | None) -> None:
    """An endpoint in `state` from `start` to `stop` (None: to the end), as derive/fold.py
    adds each interval."""
    s = list(State).index(state)
    if stop is not None:
        t.delta[s, bin_of(stop, t.origin, t.delta, t.width)] -= 1
    t.delta[s, bin_of(start, t.origin, t.delta, t.width)] += 1


def test_counts_match_a_direct_count_through_coarsening():
    rng = random.Random(7)
    spans = []
    for _ in range(2000):
        start = rng.uniform(0, 50)  # 50 s: coarsens from 1 ms bins five times
        stop = start + rng.expovariate(0.5) if rng.random() < 0.8 else None
        spans.append((start, stop))
    orders = [spans, list(reversed(spans))]
    results = []
    for order in orders:
        t = Timeline()
        t.start(0.0)
        for start, stop in order:
            add(t, State.CLOSE_WAIT, start, stop)
        results.append(t.to_json(60.0))
    assert results[0] == results[1]
    out = results[0]
    width = out["bin_seconds"]
    assert width == FIRST_WIDTH * 2 ** 5 and len(out["states"]["CLOSE_WAIT"]) <= BINS

    def b(x):
        return int(x / width)

    direct = [sum(1 for s, e in spans if b(s) <= i and (e is None or b(e) > i))
              for i in range(len(out["states"]["CLOSE_WAIT"]))]
    assert out["states"]["CLOSE_WAIT"] == direct


@pytest.mark.skipif(not (SAMPLES / "close_wait_leak.pcap").exists(), reason="no sample")
def test_leak_sample_ends_with_the_kernels_close_wait_count():
    result = analyze([str(SAMPLES / "close_wait_leak.pcap")])
    tl = result["timeline"]
    in_ss = (SAMPLES / "close_wait_leak.ss.txt").read_text().count("CLOSE-WAIT")
    assert tl["states"]["CLOSE_WAIT"][-1] == in_ss == 5
    assert tl["states"]["FIN_WAIT_2"][-1] == 5  # the clients, orphaned, timer not run out
    assert tl["states"]["CLOSE_WAIT"][0] <= 1  # they piled up one by one
    assert tl["start"] == result["capture"]["first_ts"]
    span = result["capture"]["end_ts"] - tl["start"]
    assert (len(tl["states"]["CLOSE_WAIT"]) - 1) * tl["bin_seconds"] <= span
