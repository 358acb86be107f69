"""`python -m experiments.benchmark` from the repository root.

Runs the script `funcgrad.experiments.benchmark`: the same as `funcgrad benchmark` from any
folder.
"""

if __name__ == "__main__":
  from funcgrad.experiments import launch

  launch("benchmark")  # signal handlers, the restart it asks for, then its imports
