"""The engine compiled once, before any test: a test that runs pcapstate in a subprocess
then sees a warm cache, as every run after the first does (the first run's own note on
stderr is tested in test_install.py)."""

from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "close_wait_leak.pcap"


@pytest.fixture(scope="session", autouse=True)
def compiled_engine() -> None:
    from pcapstate.analyze import analyze

    analyze([str(SAMPLE)], on_record=lambda rec: None, on_zeek=lambda recs: None)
