"""Sphinx's configuration: the docs are Markdown pages (MyST) in this folder, built with the furo theme.

    sphinx-build -W --keep-going -n -b html docs docs/_build    # what scripts/test runs: any warning fails it
"""

project = "pytest-llmtune"
author = "the pytest-llmtune developers"
extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "*.py"]
html_theme = "furo"
html_title = "pytest-llmtune"
myst_heading_anchors = 3  # "#the-gate" links to a heading, as on GitHub
myst_enable_extensions = ["colon_fence"]
