"""Pure text-processing stages: decoding, normalisation, matching keys, boilerplate stripping."""
