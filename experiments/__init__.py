"""Thin absl scripts, one per tutorial section: `python -m experiments.<name> --help`."""
