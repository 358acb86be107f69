"""`python -m experiments.optimize` from the repository root.

Runs the script `funcgrad.experiments.optimize`: the same as `funcgrad optimize` from any
folder.
"""

if __name__ == "__main__":
  from funcgrad.experiments import launch

  launch("optimize")  # signal handlers, the restart it asks for, then its imports
