"""Sphinx configuration of the spikevae documentation site (``make docs``).

The workflow pages are the Markdown files of this folder (MyST), the API reference comes from the
docstrings (autodoc, numpydoc style through napoleon), and the gallery's scripts in ``examples/`` are
executed at every build (sphinx-gallery), so each figure and number they show comes from the code that
ships. ``make docs`` builds with warnings as errors.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")

import spikevae  # noqa: E402

project = "spikevae"
author = "the spikevae developers"
copyright = "2026, the spikevae developers"
release = version = getattr(spikevae, "__version__", "0.1.0")

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.md5", "auto_examples/*.json",
                    "sg_execution_times.rst", "generated/*"]  # generated/: tables the pages include

# MyST: `page.md#heading` links resolve to the heading's anchor
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath", "colon_fence"]

# API reference from the docstrings (numpydoc style)
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
autodoc_typehints = "description"
autodoc_member_order = "bysource"
autosummary_generate = False
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True  # a record's fields once (NamedTuple fields are also autodoc members)
napoleon_preprocess_types = True
napoleon_type_aliases = {"path": "os.PathLike"}

# the gallery: every examples/plot_*.py is run at build time; a failing example fails the build
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "show_memory": False,
    "write_computation_times": False,
}

html_theme = "alabaster"
html_title = "spikevae"
html_static_path = ["_static"]  # custom.css (alabaster includes it)
html_theme_options = {
    "description": "Poisson VAE, real Brian2 spike trains, LCA and iP-VAE, NWB/Neo export",
    "fixed_sidebar": True,
    "page_width": "1100px",
}
nitpicky = False
suppress_warnings: list[str] = []


_LITERAL = re.compile(r"(``.*?``|`[^`]*`)")


def _escape_bars(app, what, name, obj, options, lines):
    """Docstrings write |x| for a norm or an absolute value; reST would read it as a substitution. Escape every
    bar outside inline literals (the docstrings hold no reST tables)."""
    for i, line in enumerate(lines):
        parts = _LITERAL.split(line)
        lines[i] = "".join(p if j % 2 else p.replace("|", "\\|") for j, p in enumerate(parts))


def setup(app):
    app.connect("autodoc-process-docstring", _escape_bars)
