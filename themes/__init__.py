"""The console's themes: Textual CSS files, shipped inside the wheel as ``fbterm.themes``.

This top-level folder is the only copy; pyproject.toml maps it to the ``fbterm.themes`` package.
"""
