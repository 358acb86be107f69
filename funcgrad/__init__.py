"""funcgrad: a PyTorch-basics tutorial as pure, functional JAX, and an eager-vs-jit runner."""

from funcgrad.devices import DeviceUnavailableError
from funcgrad.devices import describe_device
from funcgrad.devices import device_of
from funcgrad.devices import gpu_available
from funcgrad.devices import platforms_present
from funcgrad.devices import put
from funcgrad.devices import resolve_device
from funcgrad.devices import to_host
from funcgrad.dtypes import DtypeRow
from funcgrad.dtypes import dtype_table
from funcgrad.dtypes import resolve_dtype
from funcgrad.dtypes import valid_dtype_names
from funcgrad.env import EnvReport
from funcgrad.env import environment_report
from funcgrad.env import format_report
from funcgrad.grads import AbsLossGrads
from funcgrad.grads import abs_loss
from funcgrad.grads import abs_loss_grad
from funcgrad.grads import abs_loss_grad_closed_form
from funcgrad.grads import intermediate_grads
from funcgrad.grads import muladd_sum
from funcgrad.grads import muladd_sum_closed_form
from funcgrad.grads import muladd_sum_grads
from funcgrad.grads import muladd_sum_grads_numpy
from funcgrad.tensors import empty
from funcgrad.tensors import randn
from funcgrad.tensors import tensor
from funcgrad.tensors import value_and_grad_wrt
from funcgrad.tensors import zeros

__version__ = "0.1.0"

__all__ = (
    "AbsLossGrads",
    "DeviceUnavailableError",
    "DtypeRow",
    "EnvReport",
    "abs_loss",
    "abs_loss_grad",
    "abs_loss_grad_closed_form",
    "describe_device",
    "device_of",
    "dtype_table",
    "empty",
    "environment_report",
    "format_report",
    "gpu_available",
    "intermediate_grads",
    "muladd_sum",
    "muladd_sum_closed_form",
    "muladd_sum_grads",
    "muladd_sum_grads_numpy",
    "platforms_present",
    "put",
    "randn",
    "resolve_device",
    "resolve_dtype",
    "tensor",
    "to_host",
    "valid_dtype_names",
    "value_and_grad_wrt",
    "zeros",
)
