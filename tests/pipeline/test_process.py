"""The pipeline's pure stages on one document."""

from __future__ import annotations

import pytest

from workers.document import Document
from workers.pipeline.process import MAX_LINE_CHARS, normalise_document

pytestmark = pytest.mark.unit


def test_document_with_an_extremely_long_line_is_dead() -> None:
    doc = Document(id="d", source="s", text="ok\n" + "y" * (MAX_LINE_CHARS + 1), input_ref="r")
    dead = normalise_document(doc)
    assert not isinstance(dead, Document) and dead.reason == "line_too_long"
