"""The Celery side: the app and its broker transport, the tasks, the per-process runtime,
backfill jobs and batches."""
