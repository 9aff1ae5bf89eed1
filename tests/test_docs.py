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


#: what a reader cannot see: numbered work items, the process's sessions and stops, notes kept outside the repository
_INTERNAL = [
    (r"(?<![\w/&])#\d+\b", "a numbered work item"),
    (r"\bresearch/", "a file outside the repository"),
    (r"\b(the|an|this|that|its|inference-comparison|layout) issue('s)?\b", "a work item"),
    (r"\b(this|same|one|an? earlier|earlier|previous|that|a later|later) sessions?\b", "a work session"),
    (r"\bsessions? (ago|before)\b", "a work session"),
    (r"\bstops? \d+\b", "a numbered stop"),
    (r"\bprevious main\b", "a branch state"),
    (r"(?<![\w.])/(work|home|root|tmp|Users)/", "an absolute path of the machine that wrote it"),
]
_URL = re.compile(r"https?://\S+|\]\([^)]*\)")


def _texts():
    for pattern in ("README.md", "docs/*.md", "docs/generated/*.md", "docs/*.py", "examples/*.py", "spikevae/**/*.py",
                    "simulations/*.py", "analysis/*.py", "benchmarks/*.py", "tests/*.py", "runs/*/README.md", "spikevae/**/*.pyx",
                    "Makefile", ".ci/run"):
        for path in sorted(ROOT.glob(pattern)):
            if path.name != "test_docs.py":
                yield path, path.read_text()


def test_the_project_speaks_only_of_itself():
    """Docs, code and comments name no work item, work session or file outside the repository (links aside)."""
    found = []
    for path, text in _texts():
        for n, line in enumerate(text.splitlines(), 1):
            plain = _URL.sub("", line)
            for pattern, what in _INTERNAL:
                if re.search(pattern, plain, flags=re.I):
                    found.append(f"{path.relative_to(ROOT)}:{n}: {what}: {line.strip()[:100]}")
    assert not found, "\n".join(found)


def test_every_figure_is_shown_and_every_shown_figure_exists():
    """docs/figures holds exactly the images the pages show (no stale file, no broken image)."""
    pages = [*(ROOT / "docs").glob("*.md"), *(ROOT / "docs" / "generated").glob("*.md"), ROOT / "README.md"]
    shown = {m for p in pages for m in re.findall(r"\]\((?:docs/)?figures/([\w.\-]+\.png)\)", p.read_text())}
    present = {p.name for p in (ROOT / "docs" / "figures").glob("*.png")}
    assert shown == present, {"shown, missing": sorted(shown - present), "on no page": sorted(present - shown)}


@pytest.mark.slow
def test_the_simulate_page_quotes_what_its_command_prints(tmp_path):
    """docs/simulate.md's table is the demo run's: rerun the page's command, rebuild the table with the function that
    wrote it (docs/regenerate.py), compare line by line."""
    import json

    from conftest import load_script, run_cli

    from spikevae.cli.simulate import main

    regen = load_script("docs/regenerate.py")
    assert run_cli(main, ["--out", str(tmp_path / "run"), *regen.SIMULATE_ARGS, "--quiet", "--no-neo"]) == 0
    lines = regen.simulate_lines(json.loads((tmp_path / "run" / "summary.json").read_text()))
    page = (ROOT / "docs" / "generated" / "simulate.md").read_text().splitlines()
    assert page[:len(lines)] == lines
