"""Input adapters: turn files (and, later, feeds) into `Document`s or `DeadInput`s."""
