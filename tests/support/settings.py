"""Settings for a test: the defaults under the test's own key prefix."""

from __future__ import annotations

from workers.config import Settings, load_settings


def settings_for(prefix: str, **dedup: object) -> Settings:
    base = load_settings()
    return base.model_copy(update={"prefix": prefix, "dedup": base.dedup.model_copy(update=dedup)})
