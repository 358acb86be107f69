"""`python -m experiments.env_check` from the repository root.

Runs the script `funcgrad.experiments.env_check`: the same as `funcgrad env_check` from any
folder.
"""

if __name__ == "__main__":
  from funcgrad.experiments import launch

  launch("env_check")  # signal handlers, the restart it asks for, then its imports
