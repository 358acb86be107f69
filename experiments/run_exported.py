"""`python -m experiments.run_exported` from the repository root.

Runs the script `funcgrad.experiments.run_exported`: the same as `funcgrad run_exported` from any
folder.
"""

if __name__ == "__main__":
  from funcgrad.experiments import launch

  launch("run_exported")  # signal handlers, the restart it asks for, then its imports
