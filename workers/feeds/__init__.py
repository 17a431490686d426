"""Feeds: their configuration, parsing RSS, Atom and JSON Feed, fetching feeds and article
pages over HTTP (polite, bounded, SSRF-guarded), polling and the beat schedule."""
