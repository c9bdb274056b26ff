"""`python -m pointbook`."""

from pointbook.cli import main

main()
