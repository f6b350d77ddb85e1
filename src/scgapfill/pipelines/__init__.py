"""One folder per pipeline: ``nodes.py`` (thin functions calling the package) and ``pipeline.py`` (wiring)."""
