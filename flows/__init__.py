"""Prefect flows that wire the stages in `tasks/`, and the `lstm-pipeline` command line (`flows/cli/`)."""
