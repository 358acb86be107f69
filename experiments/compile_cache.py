"""`python -m experiments.compile_cache` from the repository root.

Runs the script `funcgrad.experiments.compile_cache`: the same as `funcgrad compile_cache` from any
folder.
"""

if __name__ == "__main__":
  from funcgrad.experiments import launch

  launch("compile_cache")  # signal handlers, the restart it asks for, then its imports
