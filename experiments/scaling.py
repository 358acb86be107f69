"""`python -m experiments.scaling` from the repository root.

Runs the script `funcgrad.experiments.scaling`: the same as `funcgrad scaling` from any
folder.
"""

if __name__ == "__main__":
  from funcgrad.experiments import launch

  launch("scaling")  # signal handlers, the restart it asks for, then its imports
