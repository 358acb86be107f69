"""`python -m experiments.dtype_table` from the repository root.

Runs the script `funcgrad.experiments.dtype_table`: the same as `funcgrad dtype_table` from any
folder.
"""

if __name__ == "__main__":
  from funcgrad.experiments import launch

  launch("dtype_table")  # signal handlers, the restart it asks for, then its imports
