"""The connection table (track/connections.py TABLE): open addressing whose keys are the
slots' own addresses and ports. Random insertions and removals, in tables small enough
that keys collide and probes wrap round the end, give what a dict gives, and removal
leaves every other key found."""

import numpy as np
import pytest

from pcapstate.jit import records
from pcapstate.track.connections import (
    KEYS_N,
    NS,
    TABLE_SEED,
    _canonical,
    _find,
    _key,
    _mix,
    _remove,
    new_table,
    rehash,
)
from pcapstate.track.slots import SLOT


@pytest.mark.parametrize(("seed", "grows", "same_hash"), [
    (0, True, False), (1, True, False), (2, False, False), (3, False, False), (4, True, True)])
def test_the_table_is_a_dict(seed, grows, same_hash):
    """`grows`: the table doubles as it fills (rehash); else it stays at 16 entries, half
    full at most, where probes wrap round its end all the time. `same_hash`: every key
    hashes alike, so only the slots' own addresses and ports tell them apart."""
    rng = np.random.default_rng(seed)
    n = 200
    T = records(np.zeros(n, SLOT))  # slot c: a connection of random addresses and ports
    T["ip_lo"] = rng.integers(1, 6, (n, 2))  # few addresses and ports: keys alike but for one
    T["ip_hi"] = rng.integers(0, 2, (n, 2))
    T["port"] = rng.integers(1, 4, (n, 2))
    T["v6"] = T["ip_hi"][:, 0] > 0
    T["tunnel"] = rng.integers(0, 2, n)
    keys = {}  # canonical key: slot
    for c in range(n):
        k = _canonical(_key(T[c], 0))[0]
        keys.setdefault(k, c)  # (a 4-tuple is one live connection)
    S, table = np.zeros(NS), new_table(8 if grows else 16)
    held: dict[tuple, int] = {}
    order = list(keys.items())
    for _ in range(300 if same_hash else 2000):  # (every probe through one cluster)
        if 2 * (S[KEYS_N] + 2) > len(table) and grows:
            old, table = table, new_table(2 * len(table))
            rehash(old, table)
        k, c = order[int(rng.integers(len(order)))]
        if not grows and 2 * (len(held) + 1) > len(table) and k not in held:
            k = list(held)[int(rng.integers(len(held)))]  # full: remove one
        h = 7 if same_hash else _mix(k, TABLE_SEED)
        i = _find(T, table, k, h)
        assert (table[i]["value"] >= 0) == (k in held)
        if k in held:
            assert table[i]["value"] == held.pop(k)
            _remove(table, S, i)
        else:
            table[i]["hash"], table[i]["value"] = h, 2 * c + 1
            S[KEYS_N] += 1
            held[k] = 2 * c + 1
        assert S[KEYS_N] == len(held) == (table["value"] >= 0).sum()
        for other, v in held.items():  # every key still found where probing finds it
            h = 7 if same_hash else _mix(other, TABLE_SEED)
            assert table[_find(T, table, other, h)]["value"] == v
    assert len(table) < 4 * len(keys) if grows else len(table) == 16
