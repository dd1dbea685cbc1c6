"""Installing: numba's compiled code is cached outside the package (a leftover cache folder
once shadowed an editable install), and README's set-up commands work in a fresh venv in
either order."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WRAP = str(ROOT / "samples" / "crafted_wraparound.pcap")


def _run_cache_dir(env: dict[str, str]) -> str:
    code = "from pcapstate import jit; print(jit.cache_dir())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, check=True).stdout.strip()


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    return {**env, **extra}


def test_the_cache_folder_is_per_user_and_keyed_by_version(tmp_path):
    import numba

    from pcapstate import __version__

    folder = _run_cache_dir(_env(XDG_CACHE_HOME=str(tmp_path)))
    assert Path(folder).parent == tmp_path / "pcapstate"
    assert __version__ in Path(folder).name and numba.__version__ in Path(folder).name
    assert Path(folder).is_dir()


def test_an_unwritable_cache_home_falls_back_to_the_temporary_folder(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    (tmp_path / "t").mkdir()
    folder = _run_cache_dir(_env(XDG_CACHE_HOME=str(blocked), TMPDIR=str(tmp_path / "t")))
    assert folder.startswith(str(tmp_path / "t" / f"pcapstate-{os.getuid()}" / ""))


def test_a_cache_folder_others_can_write_to_is_not_used(tmp_path):
    """numba loads the code it finds in its cache: a folder others can write to is not
    used, the temporary folder's is."""
    (tmp_path / "pcapstate").mkdir()
    os.chmod(tmp_path / "pcapstate", 0o777)
    (tmp_path / "t").mkdir()
    folder = _run_cache_dir(_env(XDG_CACHE_HOME=str(tmp_path), TMPDIR=str(tmp_path / "t")))
    assert folder.startswith(str(tmp_path / "t" / f"pcapstate-{os.getuid()}" / ""))
    assert os.stat(folder).st_mode & 0o077 == 0


@pytest.mark.slow
def test_first_run_compiles_into_the_user_cache_and_says_so(tmp_path):
    """With an empty cache the engine compiles, says so on stderr (a terminal or not), and
    leaves nothing beside the package's source."""
    import pcapstate

    package = Path(pcapstate.__file__).parent
    before = {p.name for p in (package / "__pycache__").glob("*.nb*")} \
        if (package / "__pycache__").is_dir() else set()
    env = _env(XDG_CACHE_HOME=str(tmp_path))
    p = subprocess.run([sys.executable, "-m", "pcapstate", "analyze", WRAP, "-q"],
                       capture_output=True, timeout=900, env=env)
    assert p.returncode == 0, p.stderr
    assert p.stderr.count(b"compiling the analysis engine") == 1
    assert b"compiled in " in p.stderr
    assert list((tmp_path / "pcapstate").rglob("*.nbi"))
    after = {p.name for p in (package / "__pycache__").glob("*.nb*")} \
        if (package / "__pycache__").is_dir() else set()
    assert after == before
    again = subprocess.run([sys.executable, "-m", "pcapstate", "analyze", WRAP, "-q"],
                           capture_output=True, timeout=300, env=env)
    assert again.returncode == 0 and b"compil" not in again.stderr
