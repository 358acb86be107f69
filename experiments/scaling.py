"""`python -m experiments.scaling` from the repository root.

Runs the script `funcgrad.experiments.scaling`: the same as `funcgrad scaling` from any
folder.
"""

import runpy

if __name__ == "__main__":
  runpy.run_module("funcgrad.experiments.scaling", run_name="__main__", alter_sys=True)
