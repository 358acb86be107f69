"""`python -m experiments.crossover` from the repository root.

Runs the script `funcgrad.experiments.crossover`: the same as `funcgrad crossover` from any
folder.
"""

if __name__ == "__main__":
  from funcgrad.experiments import launch

  launch("crossover")  # signal handlers, the restart it asks for, then its imports
