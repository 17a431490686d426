"""`newsdedup explain ID`: why an input was published or dropped, shown from the streams.

- find.py: the one I/O edge, finding an input's entries in `docs` and `duplicates` and a
  published document by id (newest first, in pages, stopping at the first match);
- explanation.py: the decision, its rule and settings, the candidates and the linked
  document, from the records found (pure);
- passages.py: the passages two texts share, as word and character spans (pure);
- render.py: the explanation as terminal text, JSON and a self-contained HTML page (pure).
"""
