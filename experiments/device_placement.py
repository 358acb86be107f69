"""`python -m experiments.device_placement` from the repository root.

Runs the script `funcgrad.experiments.device_placement`: the same as `funcgrad
device_placement` from any folder.
"""

if __name__ == "__main__":
  from funcgrad.experiments import launch

  launch("device_placement")  # signal handlers, the restart it asks for, then its imports
