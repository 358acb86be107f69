"""`python -m experiments.distributed` from the repository root.

Runs the script `funcgrad.experiments.distributed`: the same as `funcgrad distributed` from any
folder.
"""

import runpy

if __name__ == "__main__":
  runpy.run_module("funcgrad.experiments.distributed", run_name="__main__", alter_sys=True)
