"""Cleaning: normalise text, fold it for matching, canonical URLs, fingerprints (content
hash, MinHash, rare facts) and the boilerplate stripper. Pure functions of their inputs."""
