"""funcgrad: a PyTorch-basics tutorial as pure, functional JAX, and an eager-vs-jit runner.

Public names are resolved lazily (PEP 562): `import funcgrad` is cheap, and importing one
submodule (say `funcgrad.exporting`, which `experiments.run_exported` uses to run a graph without
its source) does not import the others. Type checkers see the explicit imports below.
"""

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it, one per line (optax's explicit style).
_EXPORTS = {
    "Comparison": "funcgrad.bench.comparison",
    "compare": "funcgrad.bench.comparison",
    "DeviceUnavailableError": "funcgrad.devices",
    "describe_device": "funcgrad.devices",
    "device_of": "funcgrad.devices",
    "gpu_available": "funcgrad.devices",
    "platforms_present": "funcgrad.devices",
    "put": "funcgrad.devices",
    "resolve_device": "funcgrad.devices",
    "to_host": "funcgrad.devices",
    "DtypeRow": "funcgrad.dtypes",
    "dtype_table": "funcgrad.dtypes",
    "resolve_dtype": "funcgrad.dtypes",
    "valid_dtype_names": "funcgrad.dtypes",
    "EnvReport": "funcgrad.env",
    "UsageError": "funcgrad.errors",
    "environment_report": "funcgrad.env",
    "format_report": "funcgrad.env",
    "AbsLossGrads": "funcgrad.grads",
    "abs_loss": "funcgrad.grads",
    "abs_loss_grad": "funcgrad.grads",
    "abs_loss_grad_closed_form": "funcgrad.grads",
    "intermediate_grads": "funcgrad.grads",
    "muladd_sum": "funcgrad.grads",
    "muladd_sum_closed_form": "funcgrad.grads",
    "muladd_sum_grads": "funcgrad.grads",
    "muladd_sum_grads_numpy": "funcgrad.grads",
    "empty": "funcgrad.tensors",
    "randn": "funcgrad.tensors",
    "tensor": "funcgrad.tensors",
    "value_and_grad_wrt": "funcgrad.tensors",
    "zeros": "funcgrad.tensors",
}

__all__ = tuple(sorted(_EXPORTS))


def __getattr__(name: str) -> Any:
  if name in _EXPORTS:
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # resolve once
    return value
  raise AttributeError(f"module 'funcgrad' has no attribute {name!r}")


def __dir__() -> list[str]:
  return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:
  from funcgrad.bench.comparison import Comparison as Comparison
  from funcgrad.bench.comparison import compare as compare
  from funcgrad.devices import DeviceUnavailableError as DeviceUnavailableError
  from funcgrad.devices import describe_device as describe_device
  from funcgrad.devices import device_of as device_of
  from funcgrad.devices import gpu_available as gpu_available
  from funcgrad.devices import platforms_present as platforms_present
  from funcgrad.devices import put as put
  from funcgrad.devices import resolve_device as resolve_device
  from funcgrad.devices import to_host as to_host
  from funcgrad.dtypes import DtypeRow as DtypeRow
  from funcgrad.dtypes import dtype_table as dtype_table
  from funcgrad.dtypes import resolve_dtype as resolve_dtype
  from funcgrad.dtypes import valid_dtype_names as valid_dtype_names
  from funcgrad.env import EnvReport as EnvReport
  from funcgrad.env import environment_report as environment_report
  from funcgrad.env import format_report as format_report
  from funcgrad.errors import UsageError as UsageError
  from funcgrad.grads import AbsLossGrads as AbsLossGrads
  from funcgrad.grads import abs_loss as abs_loss
  from funcgrad.grads import abs_loss_grad as abs_loss_grad
  from funcgrad.grads import abs_loss_grad_closed_form as abs_loss_grad_closed_form
  from funcgrad.grads import intermediate_grads as intermediate_grads
  from funcgrad.grads import muladd_sum as muladd_sum
  from funcgrad.grads import muladd_sum_closed_form as muladd_sum_closed_form
  from funcgrad.grads import muladd_sum_grads as muladd_sum_grads
  from funcgrad.grads import muladd_sum_grads_numpy as muladd_sum_grads_numpy
  from funcgrad.tensors import empty as empty
  from funcgrad.tensors import randn as randn
  from funcgrad.tensors import tensor as tensor
  from funcgrad.tensors import value_and_grad_wrt as value_and_grad_wrt
  from funcgrad.tensors import zeros as zeros
