"""Stages 8-9, what a run shows people: figures, the Prefect report, tables written as .csv or .xlsx."""
