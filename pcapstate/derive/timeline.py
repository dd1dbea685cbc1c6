"""How many endpoints are in each state over the capture's time: the picture of a leak
growing.

Each interval an endpoint spends in a state (other than CLOSED) adds +1 to that state in the
time bin where it starts and -1 in the bin where it ends; a running sum gives the count at
the end of each bin. The bins start at the capture's first record, 1 ms wide; whenever a
time falls past the last of BINS bins, neighbouring bins are merged in pairs and the width
doubles, so the memory is fixed and a capture of any length ends with between BINS / 2 and
BINS bins. Widths stay powers of two times the first, so a time's bin at width 2w is exactly
half its bin at width w, and the result does not depend on the order intervals arrive in.
derive/fold.py adds the intervals of every retired connection.
"""

from typing import Any

import numpy as np

from pcapstate.jit import njit
from pcapstate.vocab import State

BINS = 2048
FIRST_WIDTH = 0.001
_STATES = list(State)


class Timeline:
    """Endpoints in each state per time bin: `delta` and `width` are what derive/fold.py
    adds to (bin_of), `to_json` the counts."""

    def __init__(self) -> None:
        self.origin: float | None = None
        self.width = np.array([FIRST_WIDTH])  # an array, so compiled code can change it
        self.delta = np.zeros((len(_STATES), BINS), np.int64)

    def start(self, ts: float) -> None:
        """The capture's first timestamp (the first call wins)."""
        if self.origin is None:
            self.origin = ts

    def to_json(self, end: float | None) -> dict[str, Any]:
        if self.origin is None or end is None:
            return {"start": None, "bin_seconds": None, "states": {}}
        n = bin_of(end, self.origin, self.delta, self.width) + 1
        counts = np.cumsum(self.delta[:, :n], axis=1)
        return {
            "start": self.origin,
            "bin_seconds": float(self.width[0]),
            "states": {st.value: counts[i].tolist() for i, st in enumerate(_STATES)
                       if self.delta[i, :n].any()},
        }


@njit(cache=True, nogil=True, inline="always")
def bin_of(t, origin, delta, width):
    """The bin of time `t`; when `t` falls past the last bin, the bins are merged in pairs
    and the width doubled until it fits."""
    while True:
        i = np.int64((t - origin) / width[0]) if t > origin else 0
        if i < delta.shape[1]:
            return i
        half = delta.shape[1] // 2
        for s in range(delta.shape[0]):
            for b in range(half):
                delta[s, b] = delta[s, 2 * b] + delta[s, 2 * b + 1]
            delta[s, half:] = 0
        width[0] *= 2
