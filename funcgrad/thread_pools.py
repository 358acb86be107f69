"""How the peers' worker threads wait for work: each library's default, or passively.

OpenBLAS (NumPy's BLAS) and OpenMP (torch's CPU kernels) keep their worker threads spinning for a
while after each call, so that the next call starts at once. In interleaved rounds the next call
is often another framework's: on a 2-core machine the spinning workers take a core from it (JAX's
attention row ran 40% slower right after NumPy blocks, measured in docs/PERFORMANCE.md). The
libraries read their settings when they load, so, like the allocator, the policy is chosen when a
process starts: `allocator.reexec_with` restarts the command with `environment(policy)` set.

Policies:
  spin: each library's own default (nothing set).
  passive: `OMP_WAIT_POLICY=PASSIVE` (OpenMP workers sleep at once) and
    `OPENBLAS_THREAD_TIMEOUT=4` (OpenBLAS workers sleep after 2**4 cycles, its minimum).
"""

import os

from funcgrad.errors import UsageError

POLICIES = ("spin", "passive")
_PASSIVE = {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_THREAD_TIMEOUT": "4"}


def environment(policy: str) -> dict[str, str]:
  """The environment variables that `policy` needs set before the libraries load.

  Raises:
    UsageError: an unknown policy.
  """
  if policy not in POLICIES:
    raise UsageError(f"Unknown thread-pool policy {policy!r}. Valid: {', '.join(POLICIES)}.")
  return dict(_PASSIVE) if policy == "passive" else {}


def in_use(environ: dict[str, str] | None = None) -> str:
  """The policy this process's environment gives: `passive` only when all of it is set."""
  environ = os.environ if environ is None else environ
  passive = all(environ.get(k, "").upper() == v for k, v in _PASSIVE.items())
  return "passive" if passive else "spin"
