"""The short, seeded fuzz pass CI runs (fuzz/fuzz_capture.py has the longer one): 2,000
inputs mutated by atheris from the samples and broken captures, each through the whole
pipeline (the engine uncompiled, so that atheris sees it), must end in a result or a
CaptureError."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")
HARNESS = Path(__file__).resolve().parent.parent / "fuzz" / "fuzz_capture.py"


@pytest.mark.slow
def test_short_seeded_fuzz_pass(tmp_path):
    p = subprocess.run([sys.executable, str(HARNESS), "-runs=2000", "-seed=1",
                        f"-artifact_prefix={tmp_path}/", str(tmp_path / "corpus")],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    # libFuzzer counts the corpus it starts from too
    done = re.search(r"Done (\d+) runs", p.stderr)
    assert done and int(done.group(1)) >= 2000, p.stderr[-3000:]
