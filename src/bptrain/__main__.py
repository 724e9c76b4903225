"""`python -m bptrain` runs the command line."""

from .cli.main import main

main()
