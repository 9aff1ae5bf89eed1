"""The tutorial (docs/tutorial.md) runs as written, and the public API is what it says."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_tutorial_runs(tmp_path, monkeypatch, capsys):
    text = (DOCS / "tutorial.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "the tutorial has no python blocks"
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    for code in blocks:
        exec(compile(code, "docs/tutorial.md", "exec"), ns)  # noqa: S102 - our own documentation
    out = capsys.readouterr().out
    assert "Fano factor across repeats" in out and "written and read back" in out
    st, lam, repeats = ns["st"], ns["lam"], ns["repeats"]
    # the oracle: spike counts are Poisson with the driving λ (total within 4 s.d.)
    assert abs(st.n_spikes - lam.sum() * repeats) < 4 * np.sqrt(lam.sum() * repeats)
    assert (tmp_path / "tutorial.nwb").stat().st_size > 0


def test_io_and_records_import_without_torch(tmp_path):
    """Reading or writing a run never imports the model framework."""
    code = ("import sys, numpy as np\n"
            "import spikevae, spikevae.io, spikevae.io.files, spikevae.analysis\n"
            "from spikevae import Presentations, SpikeTrains\n"
            "p = Presentations(np.arange(2), np.zeros(2, int), np.array([0., .1]), np.array([.1, .2]), np.ones((2, 3)))\n"
            "st = SpikeTrains(np.array([0, 2]), np.array([.05, .15]), 3, .2, 1e-4, p)\n"
            f"spikevae.io.write_nwb({str(tmp_path / 'x.nwb')!r}, st)\n"
            f"back = spikevae.io.read_nwb({str(tmp_path / 'x.nwb')!r})\n"
            "assert back.counts().tolist() == [[1, 0, 0], [0, 0, 1]]\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_public_api_names_resolve():
    import spikevae

    for name in spikevae.__all__:
        assert getattr(spikevae, name) is not None, name
    assert callable(spikevae.lca.lca) and callable(spikevae.simulate_spikes)


def test_console_scripts_installed_and_show_defaults():
    bindir = Path(sys.executable).parent
    for cmd in ("simulate", "train", "evaluate", "sweep", "lca", "demo"):
        exe = bindir / f"spikevae-{cmd}"
        assert exe.exists(), exe
    res = subprocess.run([str(bindir / "spikevae-simulate"), "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "(default: 100.0)" in res.stdout
