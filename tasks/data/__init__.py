"""Stages 1-2, the data: read a workbook, read its time column, clean when asked, validate against the schemas."""
