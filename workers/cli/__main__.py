"""`python -m workers.cli`: the `newsdedup` command."""

from workers.cli import main

main()
