"""`python -m experiments.gradients` from the repository root.

Runs the script `funcgrad.experiments.gradients`: the same as `funcgrad gradients` from any
folder.
"""

if __name__ == "__main__":
  from funcgrad.experiments import launch

  launch("gradients")  # signal handlers, the restart it asks for, then its imports
