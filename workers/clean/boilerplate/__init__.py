"""Boilerplate: the rules (data in config/boilerplate.toml), the lines each source has
learned, links to other articles, and the stripping algorithm."""
