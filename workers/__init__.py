"""newsdedup: streaming ingest and near-duplicate removal for news.

`celery -A workers worker` finds the Celery app here.
"""

from workers.celery_app import app

__all__ = ["app"]
