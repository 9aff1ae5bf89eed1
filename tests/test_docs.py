"""Numbers quoted in the README come from the code: the shipped model's validation table is recomputed here (the
same function ``make demo`` and the gallery's first example print) and compared at the README's printed precision."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _readme_table() -> dict:
    text = (ROOT / "README.md").read_text()
    head = next(line for line in text.splitlines() if line.startswith("| NELBO | MSE, sampled counts"))
    lines = text.splitlines()
    row = lines[lines.index(head) + 2]
    cols = [c.strip() for c in head.strip("|").split("|")]
    vals = [c.strip().strip("*") for c in row.strip("|").split("|")]
    return dict(zip(cols, vals))


def test_readme_shipped_model_table_is_what_the_code_computes():
    import spikevae
    from spikevae.workflows.evaluation import validation_summary

    table = _readme_table()
    m = validation_summary(spikevae.load_model(), n_val=10_000, seed=0)
    keys = {"NELBO": "nelbo", "MSE, sampled counts": "mse", "MSE, posterior mean": "mse_map", "KL (nats)": "kl",
            "active latents (KL > 0.01)": "active_fraction", "lifetime sparsity": "lifetime_sparsity",
            "zero counts": "portion_zeros", "patch energy": "energy"}
    assert set(keys) == set(table), set(table) ^ set(keys)
    for col, key in keys.items():
        quoted = table[col]
        decimals = len(quoted.split(".")[1]) if "." in quoted else 0
        # the quoted value is the computed one rounded to the quoted digits (half a unit of the last digit)
        assert float(quoted) == pytest.approx(m[key], abs=0.5 * 10.0**-decimals + 1e-9), (col, quoted, m[key])


def test_every_docs_page_is_on_the_site():
    """Each Markdown page of docs/ is in a toctree of the site's index (Sphinx would warn, and the build fails)."""
    index = (ROOT / "docs" / "index.md").read_text()
    listed = set(re.findall(r"^([a-z_]+)$", index, flags=re.M))
    pages = {p.stem for p in (ROOT / "docs").glob("*.md")} - {"index"}
    assert pages <= listed, pages - listed
