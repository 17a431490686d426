"""Helpers shared by the tests of several packages (tests/ is on the path: `pythonpath` in
pyproject.toml): a loopback HTTP server, edited copies of texts, pages and feeds, articles
and settings, a private redis-server for the fault tests."""
