"""`python -m flows.cli`: the command line, as the `lstm-pipeline` script runs it."""

from flows.cli import main

main()
