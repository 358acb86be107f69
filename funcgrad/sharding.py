"""Placing arrays on a mesh of devices: one computation spread over many chips.

torch's device story in the tutorial stops at `.to('cuda')`. JAX's next step is a
`jax.sharding.Mesh` of devices with named axes and a `NamedSharding` that says which array axis is
split over which mesh axis; `jax.jit` then runs the same program on every device, inserting the
collectives (here: the all-reduce of the sum) itself.
"""

import math
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from funcgrad.errors import UsageError
from funcgrad.shapes import parse_shape

AXES_1D = ("data",)
AXES_2D = ("data", "model")


MAX_DEVICES = 1024  # simulated CPU devices (and mesh sizes): each costs memory and threads


def check_device_count(n: int, flag: str = "--simulate_cpu_devices") -> int:
  """Returns `n` if it is a device count in 1..`MAX_DEVICES`.

  Raises:
    UsageError: naming the flag, the value and the range.
  """
  if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_DEVICES:
    raise UsageError(f"Invalid {flag}={n}: expected a device count in 1..{MAX_DEVICES} (each "
                     "simulated device costs memory and threads; 100000 would take gigabytes).")
  return n


def set_cpu_device_count(n: int, flag: str = "--simulate_cpu_devices") -> None:
  """Simulates `n` CPU devices. Must run before JAX initialises its backends.

  Raises:
    UsageError: if `n` is not in 1..`MAX_DEVICES` (naming `flag`), or the backends are already
      initialised with another count.
  """
  check_device_count(n, flag)
  try:
    jax.config.update("jax_num_cpu_devices", n)
  except RuntimeError as e:
    raise UsageError(f"Cannot set {n} CPU devices now: JAX's backends are already initialised "
                     f"({e}). Set it before any JAX computation.") from None


def parse_mesh(text: str, flag: str = "--mesh") -> tuple[int, ...]:
  """'4' -> (4,); '2x2' -> (2, 2).

  Raises:
    UsageError: naming the flag and the bad mesh.
  """
  try:
    return parse_shape(text, flag, max_rank=2)  # type: ignore[return-value]
  except UsageError:
    raise UsageError(f"Invalid mesh {text!r} in {flag}: expected N or AxB with positive "
                     "integers.") from None


def make_mesh(shape: Sequence[int], devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D ('data') or 2-D ('data', 'model') mesh over the first prod(shape) devices.

  Raises:
    UsageError: if there are fewer devices than the mesh needs (the message gives the count).
  """
  need = math.prod(shape)
  check_device_count(need, "--mesh")
  devices = list(jax.devices() if devices is None else devices)
  if need > len(devices):
    raise UsageError(f"Mesh {'x'.join(map(str, shape))} needs {need} devices; there "
                     f"{'is' if len(devices) == 1 else 'are'} {len(devices)} "
                     f"({devices[0].platform}). On CPU, simulate more with "
                     f"--simulate_cpu_devices={need}.")
  grid = np.array(devices[:need], dtype=object).reshape(tuple(shape))
  return Mesh(grid, AXES_1D if len(shape) == 1 else AXES_2D)


def spec_for(ndim: int, mesh: Mesh) -> P:
  """How an input of `ndim` dimensions is split: rows over 'data' (and columns over 'model');
  1-D inputs over every mesh axis."""
  if ndim == 1:
    return P(tuple(mesh.axis_names) if len(mesh.axis_names) > 1 else mesh.axis_names[0])
  if len(mesh.axis_names) == 1:
    return P("data", None)
  return P("data", "model")


def check_divisible(shape: Sequence[int], mesh: Mesh) -> None:
  """Raises ValueError unless each split dimension divides evenly over its mesh axes."""
  spec = spec_for(len(shape), mesh)
  for dim, axes in zip(shape, spec, strict=False):
    if axes is None:
      continue
    parts = math.prod(mesh.shape[a] for a in (axes if isinstance(axes, tuple) else (axes,)))
    if dim % parts:
      raise UsageError(f"Shape {'x'.join(map(str, shape))} does not split evenly over mesh "
                       f"{dict(mesh.shape)}: {dim} is not a multiple of {parts}.")


def shard(array: np.ndarray | jax.Array, mesh: Mesh) -> jax.Array:
  """Places `array` on `mesh`, split as `spec_for` says (torch's `.to(device)`, for many)."""
  check_divisible(np.shape(array), mesh)
  return jax.device_put(array, NamedSharding(mesh, spec_for(np.ndim(array), mesh)))


def check_batch_divisible(batch: int, mesh: Mesh) -> None:
  """Raises UsageError unless a batch of `batch` rows splits evenly over every device of `mesh`."""
  if batch % mesh.size:
    raise UsageError(f"A batch of {batch} does not split evenly over the {mesh.size} devices of "
                     f"mesh {dict(mesh.shape)}: pick a batch that is a multiple of {mesh.size}.")


def shard_batch(array: np.ndarray | jax.Array, mesh: Mesh) -> jax.Array:
  """Places `array` on `mesh` with its rows (the batch) split over every device (data parallel)."""
  check_batch_divisible(np.shape(array)[0], mesh)
  spec = P(tuple(mesh.axis_names), *([None] * (np.ndim(array) - 1)))
  return jax.device_put(array, NamedSharding(mesh, spec))


def replicate(tree: object, mesh: Mesh) -> object:
  """A copy of `tree` on every device of `mesh` (parameters, in data parallelism)."""
  return jax.device_put(tree, NamedSharding(mesh, P()))


def describe(x: jax.Array) -> str:
  """'data=4 over 4 devices, P('data', None)', or the device for a single-device array."""
  sharding = x.sharding
  if isinstance(sharding, NamedSharding):
    axes = ", ".join(f"{k}={v}" for k, v in sharding.mesh.shape.items())
    return f"{axes} over {len(sharding.device_set)} devices, {sharding.spec}"
  devices = sorted(sharding.device_set, key=lambda d: d.id)
  return f"{len(devices)} device(s): {', '.join(str(d) for d in devices)}"
