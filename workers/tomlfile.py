"""Reading a TOML file the user gave (settings, boilerplate rules, feeds): one way, with
every way it can fail said in one line."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from workers.messages import one_line


def read_toml(path: Path) -> dict[str, Any]:
    """The file's tables. A missing file raises FileNotFoundError as it is (it means
    different things to different callers: no feeds, a mistake); every other problem is
    one ValueError line, "<path>: <what is wrong>"."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise ValueError(f"{path}: a directory, not a TOML file") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: invalid TOML: {one_line(str(exc))}") from None
