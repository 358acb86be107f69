"""`python -m experiments.<name>` from the repository root: each module here runs the script
`funcgrad.experiments.<name>`, which `funcgrad <name>` runs from any folder."""
