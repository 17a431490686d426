"""Helpers shared by the tests of several packages (tests/ is on the path: `pythonpath` in
pyproject.toml): a loopback HTTP server, edited copies of texts, pages and feeds, synthetic
articles and settings, a table-driven resolver, a Prometheus text parser, and a private
redis-server with real workers for the fault tests."""
