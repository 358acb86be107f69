"""torch-style device specs -> JAX devices; move arrays there and back.

torch writes `x.to(torch.device('cuda'))`; JAX writes `jax.device_put(x, jax.devices('gpu')[0])`.
`resolve_device` accepts torch's spellings so a torch user can keep thinking in them.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import re

import jax
import numpy as np
from jax.typing import ArrayLike

from funcgrad._types import DeviceSpec
from funcgrad.errors import UsageError

CUDA_INSTALL_HINT = ("Install JAX with CUDA: pip install -e '.[cuda13]' "
                     "(or 'jax[cuda13]'; 'cuda12' for CUDA 12).")

# torch's device type -> JAX platform. JAX calls every NVIDIA/AMD GPU backend 'gpu'.
_PLATFORM_OF = {"cpu": "cpu", "cuda": "gpu", "gpu": "gpu", "tpu": "tpu"}
_SPEC = re.compile(r"^(?P<kind>[a-z]+)(?::(?P<index>\d+))?$")
VALID_DEVICE_SPECS = "cpu, cpu:N, cuda, cuda:N, gpu, gpu:N (or a jax.Device)"


class DeviceUnavailableError(UsageError, RuntimeError):
  """The requested platform has no device in this process."""


# JAX_PLATFORMS names -> what provides them (None: built into jaxlib).
_PLATFORM_PROVIDERS = {"cpu": None, "cuda": "cuda", "gpu": "cuda", "rocm": "rocm", "tpu": "tpu"}


@functools.cache
def _installed_plugins() -> frozenset[str]:
  """Names of the installed JAX plugins ('xla_cuda13', 'xla_rocm', ...) and 'tpu' with libtpu.

  Read once per process: scanning every installed package's entry points takes ~20 ms, and
  every sweep checks JAX_PLATFORMS (what is installed does not change while JAX runs).
  """
  names = {ep.name for ep in importlib.metadata.entry_points(group="jax_plugins")}
  if importlib.util.find_spec("libtpu") is not None:
    names.add("tpu")
  return frozenset(names)


def known_platforms() -> tuple[str, ...]:
  """The JAX_PLATFORMS names that this installation could start: cpu, plus the platforms whose
  plugin is installed (whether a device is present is only known once JAX starts)."""
  plugins = _installed_plugins()
  return tuple(name for name, provider in _PLATFORM_PROVIDERS.items()
               if provider is None or any(provider in p for p in plugins))


def check_jax_platforms() -> None:
  """Refuses, without starting JAX, a `JAX_PLATFORMS` naming a platform that is unknown or not
  installed here (e.g. cuda on a machine without JAX's CUDA plugin).

  Raises:
    UsageError: one line naming JAX_PLATFORMS, the platform and what is installed.
  """
  value = os.environ.get("JAX_PLATFORMS", "")
  names = [n.strip().lower() for n in value.split(",") if n.strip()]
  known = known_platforms()
  plugins = _installed_plugins()
  for name in names:
    if name in known or any(name in p for p in plugins):
      continue
    what = ("not installed here" if name in _PLATFORM_PROVIDERS else "not a platform JAX knows")
    hint = f" ({CUDA_INSTALL_HINT})" if _PLATFORM_PROVIDERS.get(name) == "cuda" else ""
    raise UsageError(f"JAX_PLATFORMS={value[:100]!r} names {name[:40]!r}, {what}{hint}; unset "
                     f"JAX_PLATFORMS, or set it to one of {', '.join(known)}.")


def _backend_failure(error: BaseException) -> UsageError:
  first = next((ln for ln in str(error).splitlines() if ln.strip()), type(error).__name__)
  return UsageError(f"JAX cannot start the platforms in JAX_PLATFORMS="
                    f"{os.environ.get('JAX_PLATFORMS', '')!r} ({first[:200]}); unset "
                    f"JAX_PLATFORMS, or set it to one of {', '.join(known_platforms())}.")


def platforms_present() -> tuple[str, ...]:
  """Returns the platforms JAX can reach here, e.g. ('cpu',) or ('cpu', 'gpu').

  Raises:
    UsageError: `JAX_PLATFORMS` names a platform that cannot start here (see
      `check_jax_platforms`), so that JAX reaches none.
  """
  check_jax_platforms()
  present, failure = [], None
  for platform in ("cpu", "gpu", "tpu"):
    try:
      jax.devices(platform)
    except (RuntimeError, AssertionError) as e:  # jax 0.10 asserts when JAX_PLATFORMS fails
      failure = failure or e
      continue
    present.append(platform)
  if not present and failure is not None:
    raise _backend_failure(failure)
  return tuple(present)


def gpu_available() -> bool:
  """Returns whether JAX sees a GPU (torch: `torch.cuda.is_available()`)."""
  return "gpu" in platforms_present()


def resolve_device(spec: DeviceSpec = None) -> jax.Device:
  """Resolves a torch-style device spec to a `jax.Device`.

  Args:
    spec: 'cpu', 'cpu:N', 'cuda', 'cuda:N', 'gpu', 'gpu:N', a `jax.Device` (returned as is), or
      None for JAX's default device.

  Returns:
    The device.

  Raises:
    UsageError: if the spec is malformed or its index is out of range (the message gives the
      number of devices).
    DeviceUnavailableError: if the platform is absent (the message lists the platforms present and
      how to install JAX with CUDA).

  Examples:
    >>> resolve_device('cpu').platform
    'cpu'
  """
  if spec is None:
    return jax.devices()[0]
  if isinstance(spec, jax.Device):
    return spec
  match = _SPEC.match(str(spec).strip().lower())
  if match is None or match["kind"] not in _PLATFORM_OF:
    raise UsageError(f"Invalid device {spec!r}. Valid: {VALID_DEVICE_SPECS}.")
  platform = _PLATFORM_OF[match["kind"]]
  try:
    devices = jax.devices(platform)
  except RuntimeError:
    hint = f" {CUDA_INSTALL_HINT}" if platform == "gpu" else ""
    raise DeviceUnavailableError(
        f"No {platform} device for {spec!r}: platforms present are "
        f"{', '.join(platforms_present())}.{hint}") from None
  index = int(match["index"] or 0)
  if index >= len(devices):
    raise UsageError(
        f"Device index out of range in {spec!r}: there {'is' if len(devices) == 1 else 'are'} "
        f"{len(devices)} {platform} device(s), so valid indices are 0..{len(devices) - 1}.")
  return devices[index]


def put(x: ArrayLike, device: DeviceSpec = None) -> jax.Array:
  """Places `x` on a device (torch: `x.to(device)`).

  Args:
    x: an array or anything `jnp.asarray` accepts.
    device: see `resolve_device`.

  Returns:
    A `jax.Array` committed to that device.
  """
  return jax.device_put(x, resolve_device(device))


def to_host(x: ArrayLike) -> np.ndarray:
  """Copies `x` back to host memory as a NumPy array (torch: `x.cpu().numpy()`)."""
  return np.asarray(jax.device_get(x))


def device_of(x: jax.Array) -> jax.Device:
  """Returns the single device `x` lives on (torch: `x.device`).

  Raises:
    UsageError: if `x` is spread over several devices (use `x.sharding` for those).
  """
  devices = x.devices()
  if len(devices) != 1:
    raise UsageError(f"Array lives on {len(devices)} devices, not one; see x.sharding.")
  return next(iter(devices))


def jax_expression(spec: DeviceSpec = None) -> str:
  """The plain JAX call that names the device of a torch-style spec: 'jax.devices("gpu")[0]'.

  It is built from the spec alone, so it names a GPU on a machine without one (for the lines a
  tutorial prints as skipped). None is JAX's default device.

  Raises:
    UsageError: if the spec is malformed.

  Examples:
    >>> jax_expression('cuda:1')
    'jax.devices("gpu")[1]'
  """
  if spec is None:
    return "jax.devices()[0]"
  if isinstance(spec, jax.Device):
    index = jax.devices(spec.platform).index(spec)
    return f'jax.devices("{spec.platform}")[{index}]'
  match = _SPEC.match(str(spec).strip().lower())
  if match is None or match["kind"] not in _PLATFORM_OF:
    raise UsageError(f"Invalid device {spec!r}. Valid: {VALID_DEVICE_SPECS}.")
  return f'jax.devices("{_PLATFORM_OF[match["kind"]]}")[{int(match["index"] or 0)}]'


def describe_device(device: jax.Device) -> str:
  """Returns a torch-like label: 'cpu:0' or 'cuda:0 (NVIDIA H100 80GB HBM3)'."""
  kind = "cuda" if device.platform == "gpu" else device.platform
  label = f"{kind}:{device.id}"
  return label if device.platform == "cpu" else f"{label} ({device.device_kind})"
