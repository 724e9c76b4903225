"""`python -m bptrain` runs the command line."""

from .cli import main

main()
