"""Your torch version of your function, run beside it: the same arguments as torch tensors.

`torch_call(split, torch_fn, ...)` calls `torch_fn` on the arguments `split` was made from, every
array leaf a torch tensor (bfloat16 kept as bfloat16; a typed JAX key as its raw `uint32` key
data, `jax.random.key_data`) and every static leaf as it is. An Equinox module arrives as the same
module with tensor leaves; a Flax NNX module arrives as its state, a nested dict of tensors
(`nnx.State.to_pure_dict`). For a value-and-gradient workload, the leaves `split` differentiates
require grad and one call is `torch_fn`'s value (and aux, with `has_aux`) and `torch.autograd.grad`
of the value with respect to them: the same outputs, in the same order, as the JAX program's.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from funcgrad import _compat
from funcgrad.bench import user_args
from funcgrad.errors import UsageError

PEER_FRAMEWORKS = ("torch",)
PEER_ENGINES = {"torch": ("torch_eager", "torch_compile")}  # the rows a peer's version makes


def check_peers(peers: Any) -> dict[str, Callable[..., Any]]:
  """`peers` as a dict of framework -> callable.

  Raises:
    UsageError: `peers` is not a dict, names an unknown framework, or holds a non-callable.
  """
  if peers is None:
    return {}
  if not isinstance(peers, dict):
    raise UsageError(f"peers must be a dict such as {{'torch': torch_fn}}, not a "
                     f"{type(peers).__name__}.")
  for framework, fn in peers.items():
    if framework not in PEER_FRAMEWORKS:
      raise UsageError(f"peers={{{framework!r}: ...}} names an unknown framework; allowed: "
                       f"{', '.join(map(repr, PEER_FRAMEWORKS))}.")
    if not callable(fn):
      raise UsageError(f"peers[{framework!r}] must be callable (your {framework} version of the "
                       f"function), not a {type(fn).__name__}.")
  return dict(peers)


def to_tensor(torch: Any, leaf: Any, where: str) -> Any:
  """One array leaf as a torch tensor on `where` (a typed key as its raw key data)."""
  if user_args.is_key(leaf):
    leaf = jax.random.key_data(leaf)
  host = np.array(leaf)  # a writable copy: torch tensors must own writable memory
  if host.dtype.name == "bfloat16":
    return torch.from_numpy(host.astype(np.float32)).to(where, torch.bfloat16)
  return torch.from_numpy(np.ascontiguousarray(host)).to(where)


@dataclasses.dataclass(frozen=True)
class TorchVersion:
  """A user's torch version of a function, as a workload's torch program: the torch engines
  call `prepare` instead of converting the inputs themselves."""

  split: user_args.SplitCall
  torch_fn: Callable[..., Any]

  def prepare(self, on_gpu: bool, compiled: bool) -> "TorchCall":
    return torch_call(self.split, self.torch_fn, on_gpu, compiled)


@dataclasses.dataclass(frozen=True)
class TorchCall:
  """A torch call ready to time: `call()` returns outputs shaped like the JAX program's."""

  call: Callable[[], Any]
  sync: Callable[[Any], Any]
  device: str
  device_kind: str


def torch_call(split: user_args.SplitCall, torch_fn: Callable[..., Any], on_gpu: bool = False,
               compiled: bool = False) -> TorchCall:
  """`torch_fn` on `split`'s arguments as torch tensors, eager or under `torch.compile`."""
  import torch  # noqa: PLC0415 - an optional peer, imported when asked for

  on_gpu = on_gpu and torch.cuda.is_available()
  where = "cuda" if on_gpu else "cpu"
  diff = [to_tensor(torch, leaf, where) for leaf in split.diff]
  rest = [to_tensor(torch, leaf, where) for leaf in split.rest]
  if split.value_and_grad:
    for t in diff:
      t.requires_grad_(True)
  args, kwargs = split.rebuild(diff, rest, modules=user_args.pure_dict)
  if compiled:
    _compat.torch_reset_compiled(torch)  # cold: the first call compiles forward and backward
    torch_fn = torch.compile(torch_fn, dynamic=False)

  if not split.value_and_grad:
    def call():  # the function itself (a training step computes its own gradients)
      return torch_fn(*args, **kwargs)
  else:
    def call():
      out = torch_fn(*args, **kwargs)
      value = out[0] if split.has_aux else out
      return out, list(torch.autograd.grad(value, diff))

  sync = (lambda out: (torch.cuda.synchronize(), out)[1]) if on_gpu else (lambda out: out)
  kind = torch.cuda.get_device_name() if on_gpu else "cpu"
  return TorchCall(call, sync, f"{where}:0", kind)
