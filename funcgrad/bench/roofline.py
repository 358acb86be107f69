"""The physical limit each row is compared with: memory copy bandwidth, once per backend.

Host: a large NumPy copy into a preallocated buffer (no page faults in the timed region). GPU: a
device-to-device copy compiled by JAX. Both count bytes read plus bytes written.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from funcgrad.bench.timing import Timer

DEFAULT_ELEMENTS = 1 << 26  # 64M float32 = 256 MB per buffer: far past any CPU cache


def host_copy_gbps(elements: int = DEFAULT_ELEMENTS, repeats: int = 7) -> float:
  """Best-of-`repeats` NumPy copy bandwidth in GB/s (read + write)."""
  src = np.ones(elements, np.float32)
  dst = np.zeros_like(src)  # both touched now, so the timed copies never page-fault
  timer = Timer(functools.partial(np.copyto, dst, src), sync=lambda out: out)
  best = min(timer.timeit(1) for _ in range(repeats))
  return 2 * src.nbytes / best / 1e9


def device_copy_gbps(device: jax.Device, elements: int = DEFAULT_ELEMENTS,
                     repeats: int = 7) -> float:
  """Best-of-`repeats` device-to-device copy bandwidth through JAX, in GB/s (read + write)."""
  src = jax.device_put(jnp.ones(elements, jnp.float32), device)
  copy = jax.jit(jnp.copy)
  timer = Timer(functools.partial(copy, src))
  timer.timeit(2)  # compile and warm
  best = min(timer.timeit(1) for _ in range(repeats))
  return 2 * src.nbytes / best / 1e9


def copy_bandwidth_gbps(device: jax.Device, elements: int = DEFAULT_ELEMENTS) -> float:
  """The copy bandwidth that rows on `device`'s backend are compared with."""
  if device.platform == "cpu":
    return host_copy_gbps(elements)
  return device_copy_gbps(device, elements)
