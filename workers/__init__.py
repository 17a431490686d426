"""newsdedup: streaming ingest and near-duplicate removal for news.

`celery -A workers worker` finds the Celery app here. It is loaded on first use, not on
import: building it reads the settings, and the CLI must be able to report a bad setting
in one line rather than fail while importing the package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

    app: Celery

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name == "app":
        from workers.worker.app import app

        return app
    raise AttributeError(f"module 'workers' has no attribute {name!r}")
