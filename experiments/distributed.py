"""`python -m experiments.distributed` from the repository root.

Runs the script `funcgrad.experiments.distributed`: the same as `funcgrad distributed` from any
folder.
"""

if __name__ == "__main__":
  from funcgrad.experiments import launch

  launch("distributed")  # signal handlers, the restart it asks for, then its imports
