"""The engine with numba's JIT disabled (NUMBA_DISABLE_JIT=1) runs as the plain Python it is
written in, to read, step through in a debugger or measure coverage: the same code as the
compiled engine, so the same results, records and Zeek lines. Two runs of one source can
still differ where numba's integer and float semantics are not Python's: this compares
them."""

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

from pcapstate.pipeline import analyze

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
ALL = sorted(p.name for p in SAMPLES.iterdir() if p.suffix in (".pcap", ".pcapng"))

SCRIPT = """
import json, sys
from pcapstate.pipeline import analyze
out = []
for path in sys.argv[1:]:
    records, zeek = [], []
    result = analyze([path], on_record=records.append,
                     on_zeek=lambda e: zeek.append({k: v.tolist() for k, v in e.items()}))
    out.append([result, records, zeek])
print(json.dumps(out))
"""


def listed(into: list[dict], entries: dict) -> None:
    """on_zeek's columns as lists (as SCRIPT sends them)."""
    into.append({k: v.tolist() for k, v in entries.items()})


def facts(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in ("elapsed_seconds",)}


def compare(names: list[str]) -> None:
    paths = [str(SAMPLES / n) for n in names]
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    p = subprocess.run([sys.executable, "-c", SCRIPT, *paths], env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    uncompiled = json.loads(p.stdout)
    for path, (result, records, zeek) in zip(paths, uncompiled, strict=True):
        got_records: list[dict] = []
        got_zeek: list[dict] = []
        compiled = analyze([path], on_record=got_records.append,
                           on_zeek=partial(listed, got_zeek))
        assert facts(result) == json.loads(json.dumps(facts(compiled))), path
        assert records == json.loads(json.dumps(got_records)), path
        assert zeek == json.loads(json.dumps(got_zeek)), path
        assert records, path


def test_every_sample_uncompiled_gives_the_compiled_results():
    assert len(ALL) >= 20
    compare(ALL)
