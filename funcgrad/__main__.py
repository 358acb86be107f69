"""`python -m funcgrad <experiment> [flags]`: the same as the `funcgrad` command."""

from funcgrad.experiments import main

main()
