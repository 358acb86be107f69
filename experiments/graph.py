"""`python -m experiments.graph` from the repository root.

Runs the script `funcgrad.experiments.graph`: the same as `funcgrad graph` from any
folder.
"""

if __name__ == "__main__":
  from funcgrad.experiments import launch

  launch("graph")  # signal handlers, the restart it asks for, then its imports
