"""The registry of workloads the runner times, by name.

The model every workload is an instance of is `workloads.model.Workload`; the tutorial's losses
are in `tutorial`, the fits in `fits`, the MLP and attention in `models`, a user's function in
`user`. Adding a workload is one entry in its module and one in `WORKLOADS` below.
"""

from funcgrad.bench.workloads.fits import fit_workload
from funcgrad.bench.workloads.model import Workload
from funcgrad.bench.workloads.models import ATTENTION, MLP, MLP_TRAIN
from funcgrad.bench.workloads.tutorial import ABS_LOSS, MULADD_SUM
from funcgrad.errors import UsageError

# The tutorial's two losses: what the graph, export, cache and scale-out tools take.
TUTORIAL_WORKLOADS = ("muladd_sum", "abs_loss")

WORKLOADS: dict[str, Workload] = {w.name: w for w in (
    MULADD_SUM, ABS_LOSS, fit_workload("abs_loss"), fit_workload("linear_regression"), MLP,
    MLP_TRAIN, ATTENTION)}


def get_workload(name: str) -> Workload:
  """Looks up a workload by name.

  Raises:
    UsageError: naming the valid workloads.
  """
  if name not in WORKLOADS:
    raise UsageError(f"Unknown workload {name!r}. Valid: {', '.join(WORKLOADS)}.")
  return WORKLOADS[name]
