"""The engine compiled once, before any test: a test that runs pcapstate in a subprocess
then sees a warm cache, as every run after the first does (the first run's own note on
stderr is tested in test_install.py)."""

from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


@pytest.fixture(scope="session", autouse=True)
def compiled_engine() -> None:
    """Each way into the engine once: the compiled pcap walk, records batched from pcapng,
    checksums checked, the records and the conn.log built."""
    from pcapstate.pipeline import analyze
    from pcapstate.settings import Settings

    for name in ("close_wait_leak.pcap", "pcapng.pcapng"):
        analyze([str(SAMPLES / name)], Settings(zeek_checksums=True),
                on_record=lambda rec: None, on_zeek=lambda recs: None,
                on_brief=lambda briefs: None)
