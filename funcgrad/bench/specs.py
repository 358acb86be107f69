"""Kept only for `experiments/export_graph.py`, which imports `specs.parse_names`: the list
parsers live in `funcgrad.shapes`. Delete this module once that script imports them from there."""

from funcgrad.shapes import parse_ints, parse_names  # noqa: F401 - the one remaining importer
