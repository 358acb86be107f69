"""`python -m experiments.tensors` from the repository root.

Runs the script `funcgrad.experiments.tensors`: the same as `funcgrad tensors` from any
folder.
"""

if __name__ == "__main__":
  from funcgrad.experiments import launch

  launch("tensors")  # signal handlers, the restart it asks for, then its imports
