"""Type aliases shared by funcgrad's modules (kept in one place, as optax does)."""

from typing import Any, TypeAlias

import jax

Shape: TypeAlias = tuple[int, ...]  # the one Shape type (`funcgrad.shapes` uses it too)
# A dtype as a user writes it: 'float32', 'torch.float', np.float32, jnp.bfloat16, np.dtype(...).
DtypeSpec: TypeAlias = Any
# A device as a torch user writes it: 'cpu', 'cuda:0', 'gpu', or a jax.Device; None = JAX's default.
DeviceSpec: TypeAlias = str | jax.Device | None
