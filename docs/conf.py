"""Sphinx configuration of the scgapfill documentation site.

Build: ``sphinx-build -W -b html docs docs/_build/html`` (README, "Documentation"). The Markdown pages
are the sources (MyST); the tutorial notebook is executed at build time by myst-nb.
``SCGAPFILL_DOCS_EXECUTE=off`` builds without executing it (the fast structural check in
tests/test_docs_site.py); the default, ``force``, executes it on every build.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(ROOT / "src"))  # the package documented is the one in this checkout

import scgapfill  # noqa: E402

project = "scgapfill"
author = "the scgapfill authors"
copyright = "2026, the scgapfill authors"
release = version = scgapfill.__version__

extensions = [
    "myst_nb",                     # Markdown pages (MyST) and executed notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",         # numpydoc-style docstrings
    "sphinx.ext.viewcode",
    "scgapfill_params",            # docs/_ext: the parameters reference, rendered from scgapfill.params
]

# .rst first: autosummary writes its stub pages (docs/generated/, not committed) with the first suffix.
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
# Commands in prose keep their "--" and straight quotes.
smartquotes = False
exclude_patterns = ["_build", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]

# --- MyST ---------------------------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist"]
# "## The training budget" is reachable as page.md#the-training-budget, as on GitHub.
myst_heading_anchors = 4
# The history files keep their headings as written (an H2 followed by H4 tables).
suppress_warnings = ["myst.header"]

# --- notebooks (myst-nb) -----------------------------------------------------------------------------
nb_execution_mode = os.environ.get("SCGAPFILL_DOCS_EXECUTE", "force")
nb_execution_timeout = 900
nb_execution_raise_on_error = True     # a broken example fails the build
nb_execution_show_tb = True
nb_output_stderr = "remove"            # Lightning's banners and library warnings are not part of the tutorial
nb_merge_streams = True
# The kernel inherits this process's environment: MPLBACKEND=Agg there would keep the figures out of the page.
os.environ.pop("MPLBACKEND", None)

# --- API reference ----------------------------------------------------------------------------------
autosummary_generate = True
autodoc_default_options = {"members": True, "show-inheritance": False}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
# torch and lightning are imported only inside functions; nothing to mock.

# No intersphinx: the site must build offline (CI reaches package registries only), and a missing
# inventory is a warning, which -W turns into a failed build.

# --- HTML ------------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "scgapfill"
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "use_download_button": True,
}
html_static_path: list[str] = []
