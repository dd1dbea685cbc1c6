"""TCP's 32-bit sequence numbers (RFC 9293, section 3.4): comparison and distance with
wraparound. Written once: the reference engine calls these, the compiled engine compiles
them."""

MASK = 0xFFFFFFFF  # x & MASK: x in sequence space
HALF = 1 << 31


def after_or_at(a: int, b: int) -> bool:
    """a >= b in sequence space, wraparound included."""
    return (a - b) & MASK < HALF


def delta(a: int, b: int) -> int:
    """a - b in sequence space, signed."""
    d = (a - b) & MASK
    return d - (1 << 32) if d >= HALF else d
