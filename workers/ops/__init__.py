"""Operating it: Redis connections and outages, the embedded server, child processes,
stats, Prometheus metrics and reading the output streams."""
