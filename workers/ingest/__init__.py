"""Ingest: plan a backfill of files and folders, load them, decode bytes, read HTML pages
(bounded, in a child process) and dates. Pure but for reading the files themselves."""
