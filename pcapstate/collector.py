"""Python's garbage collector held off while many objects are made that either hold no
cycles or live to the end. Each 700 containers made set off a pass, and its passes over
older objects walked them all again: measured on the benchmark capture, a quarter of the
time the records took (derive/records.py), and 40-60 ms of the 0.3 s the engine takes to
import and load (pipeline.py)."""

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused() -> Iterator[None]:
    """No collector passes inside (a decorator too: `@paused()`); it is left on or off as
    it was found."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
