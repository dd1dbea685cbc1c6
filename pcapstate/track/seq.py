"""TCP's 32-bit sequence numbers (RFC 9293, section 3.4): comparison and distance with
wraparound."""

from pcapstate.jit import njit

MASK = 0xFFFFFFFF  # x & MASK: x in sequence space
HALF = 1 << 31


@njit(cache=True, nogil=True, inline="always")
def after_or_at(a, b):
    """a >= b in sequence space, wraparound included."""
    return (a - b) & MASK < HALF


@njit(cache=True, nogil=True, inline="always")
def delta(a, b):
    """a - b in sequence space, signed."""
    d = (a - b) & MASK
    return d - (1 << 32) if d >= HALF else d
