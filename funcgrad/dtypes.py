"""The tutorial's dtype table, generated from live JAX, and `resolve_dtype`.

torch users name dtypes as `torch.float32`, `torch.float` or `torch.FloatTensor`; JAX uses NumPy
dtypes. `resolve_dtype` accepts every spelling and refuses to silently narrow a 64-bit dtype when
`jax_enable_x64` is off (JAX itself would quietly hand back 32-bit arrays).
"""

from __future__ import annotations

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from funcgrad._types import DtypeSpec
from funcgrad.devices import platforms_present
from funcgrad.errors import UsageError


@dataclasses.dataclass(frozen=True)
class _DtypeSpecRow:
  description: str
  jax_name: str
  torch_names: tuple[str, ...]
  torch_cpu_tensor: str
  torch_gpu_tensor: str


# The tutorial's nine rows, in its order, plus bfloat16 (the dtype accelerators actually train in).
_ROWS = (
    _DtypeSpecRow("32-bit floating point", "float32", ("torch.float32", "torch.float"),
                  "torch.FloatTensor", "torch.cuda.FloatTensor"),
    _DtypeSpecRow("64-bit floating point", "float64", ("torch.float64", "torch.double"),
                  "torch.DoubleTensor", "torch.cuda.DoubleTensor"),
    _DtypeSpecRow("16-bit floating point", "float16", ("torch.float16", "torch.half"),
                  "torch.HalfTensor", "torch.cuda.HalfTensor"),
    _DtypeSpecRow("8-bit integer (unsigned)", "uint8", ("torch.uint8",),
                  "torch.ByteTensor", "torch.cuda.ByteTensor"),
    _DtypeSpecRow("8-bit integer (signed)", "int8", ("torch.int8",),
                  "torch.CharTensor", "torch.cuda.CharTensor"),
    _DtypeSpecRow("16-bit integer (signed)", "int16", ("torch.int16", "torch.short"),
                  "torch.ShortTensor", "torch.cuda.ShortTensor"),
    _DtypeSpecRow("32-bit integer (signed)", "int32", ("torch.int32", "torch.int"),
                  "torch.IntTensor", "torch.cuda.IntTensor"),
    _DtypeSpecRow("64-bit integer (signed)", "int64", ("torch.int64", "torch.long"),
                  "torch.LongTensor", "torch.cuda.LongTensor"),
    _DtypeSpecRow("Boolean", "bool", ("torch.bool",),
                  "torch.BoolTensor", "torch.cuda.BoolTensor"),
    _DtypeSpecRow("16-bit brain floating point", "bfloat16", ("torch.bfloat16",),
                  "torch.BFloat16Tensor", "torch.cuda.BFloat16Tensor"),
)


def _name_table() -> dict[str, str]:
  """Every accepted spelling -> JAX dtype name."""
  names = {}
  for row in _ROWS:
    names[row.jax_name] = row.jax_name
    for alias in row.torch_names:
      names[alias] = row.jax_name
      names[alias.removeprefix("torch.")] = row.jax_name  # 'float', 'double', 'long', ...
    names[row.torch_cpu_tensor] = row.jax_name
    names[row.torch_gpu_tensor] = row.jax_name
  return names


_NAMES = _name_table()


def valid_dtype_names() -> tuple[str, ...]:
  """Returns the dtype names `resolve_dtype` accepts (JAX and torch spellings), sorted.

  torch's tensor type names ('torch.FloatTensor', 'torch.cuda.FloatTensor') are accepted too.
  """
  return tuple(sorted(name for name in _NAMES if not name.endswith("Tensor")))


def _valid_message() -> str:
  return f"{', '.join(valid_dtype_names())} (and torch tensor types such as torch.FloatTensor)"


def x64_enabled() -> bool:
  """Returns whether JAX creates 64-bit arrays (`jax_enable_x64`)."""
  return bool(jax.config.read("jax_enable_x64"))


def needs_x64(dtype: DtypeSpec) -> bool:
  """Returns whether JAX needs `jax_enable_x64` to hold `dtype` without narrowing it."""
  return np.dtype(dtype).itemsize == 8


def canonical_dtype(spec: DtypeSpec) -> np.dtype:
  """Like `resolve_dtype`, without the x64 check: the dtype a spelling names.

  Raises:
    UsageError: if the name is unknown (the message lists every valid name).
  """
  if isinstance(spec, str) or type(spec).__module__.startswith("torch"):
    name = str(spec)  # str(torch.float32) == 'torch.float32'
    if name not in _NAMES:
      raise UsageError(
          f"Unknown dtype {name!r}. Valid names: {_valid_message()}.")
    return np.dtype(_NAMES[name])
  try:
    dtype = np.dtype(spec)
  except TypeError:
    raise UsageError(
        f"Unknown dtype {spec!r}. Valid names: {_valid_message()}.") from None
  if dtype.name not in _NAMES:
    raise UsageError(
        f"Unsupported dtype {dtype.name!r}. Valid names: {_valid_message()}.")
  return dtype


def resolve_dtype(spec: DtypeSpec) -> np.dtype:
  """Resolves a NumPy, JAX or torch dtype spelling to the NumPy dtype JAX will use.

  Args:
    spec: 'float32', 'torch.float32', 'torch.float', 'float', 'torch.FloatTensor',
      `np.float32`, `jnp.bfloat16`, `np.dtype('int8')`, or a `torch.dtype`.

  Returns:
    The `np.dtype`.

  Raises:
    UsageError: if the name is unknown (the message lists every valid name), or if the dtype is
      64-bit while `jax_enable_x64` is off (JAX would silently narrow it to 32 bits).

  Examples:
    >>> resolve_dtype('torch.half')
    dtype('float16')
    >>> resolve_dtype('torch.FloatTensor')
    dtype('float32')
  """
  dtype = canonical_dtype(spec)
  if needs_x64(dtype) and not x64_enabled():
    raise UsageError(
        f"dtype {dtype.name!r} needs 64-bit mode, which is off: JAX would silently give "
        f"{dtype.name.replace('64', '32')}. Enable it with "
        "jax.config.update('jax_enable_x64', True) (or JAX_ENABLE_X64=1) before creating arrays.")
  return dtype


@dataclasses.dataclass(frozen=True)
class DtypeRow:
  """One row of the dtype table, as checked on this machine.

  Attributes:
    description: what the tutorial calls it ('32-bit floating point').
    torch_names: torch's names, canonical first then aliases ('torch.float32', 'torch.float').
    torch_cpu_tensor: torch's legacy CPU tensor type ('torch.FloatTensor').
    torch_gpu_tensor: torch's legacy CUDA tensor type ('torch.cuda.FloatTensor').
    jax_dtype: the JAX (NumPy) dtype name ('float32').
    needs_x64: whether JAX needs `jax_enable_x64` to hold it without narrowing.
    works_on: backend platform -> whether an array of exactly this dtype was created there.
  """

  description: str
  torch_names: tuple[str, ...]
  torch_cpu_tensor: str
  torch_gpu_tensor: str
  jax_dtype: str
  needs_x64: bool
  works_on: dict[str, bool]


def _works_on(dtype: np.dtype, device: jax.Device) -> bool:
  """Creates a small array of `dtype` on `device`; True if it exists there with that exact dtype."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # JAX warns when x64 is off and it narrows; we report it.
    try:
      array = jax.device_put(jnp.zeros((2,), dtype=dtype), device)
      jax.block_until_ready(array)
    except Exception:  # noqa: BLE001 - any failure to create it means "does not work here".
      return False
  return array.dtype == dtype


def dtype_table(backends: tuple[str, ...] | None = None) -> list[DtypeRow]:
  """Builds the tutorial's dtype table (plus bfloat16) by trying each dtype on each backend.

  Args:
    backends: platforms to check; default: every platform present.

  Returns:
    One `DtypeRow` per dtype, in the tutorial's order, bfloat16 last.
  """
  backends = platforms_present() if backends is None else backends
  devices = {platform: jax.devices(platform)[0] for platform in backends}
  return [
      DtypeRow(
          description=row.description,
          torch_names=row.torch_names,
          torch_cpu_tensor=row.torch_cpu_tensor,
          torch_gpu_tensor=row.torch_gpu_tensor,
          jax_dtype=row.jax_name,
          needs_x64=needs_x64(row.jax_name),
          works_on={p: _works_on(np.dtype(row.jax_name), d) for p, d in devices.items()},
      )
      for row in _ROWS
  ]
