"""`python -m experiments.compare` from the repository root.

Runs the script `funcgrad.experiments.compare`: the same as `funcgrad compare` from any
folder.
"""

if __name__ == "__main__":
  from funcgrad.experiments import launch

  launch("compare")  # signal handlers, the restart it asks for, then its imports
