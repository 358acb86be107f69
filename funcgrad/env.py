"""The environment report: what the tutorial's version checks print, as a structured record.

The tutorial printed `sys.version`, `torch.__version__`, `torch.version.cuda` and
`torch.backends.cudnn.version()`. JAX has no public API for the CUDA and cuDNN versions, so the
GPU fields come from what jaxlib's CUDA plugin exposes, and are None whenever that is absent.
"""

import dataclasses
import importlib
import importlib.metadata
import os
import platform
import sys
from typing import Any

import jax

from funcgrad import _compat
from funcgrad.devices import platforms_present
from funcgrad.dtypes import x64_enabled
from funcgrad.errors import UsageError

_PACKAGES = ("jax", "jaxlib", "numpy", "optax")


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
  """One device JAX sees."""

  platform: str
  id: int
  device_kind: str
  process_index: int
  compute_capability: str | None = None  # GPU only, e.g. '9.0'


@dataclasses.dataclass(frozen=True)
class CudaInfo:
  """CUDA/cuDNN versions as jaxlib's CUDA plugin reports them; None where it does not."""

  cuda_runtime_version: int | None
  cuda_driver_version: int | None
  cudnn_version: int | None


@dataclasses.dataclass(frozen=True)
class EnvReport:
  """What this process runs on: versions, platforms, devices, and CUDA details on a GPU."""

  python: str
  packages: dict[str, str | None]
  machine: dict[str, Any]
  platforms: tuple[str, ...]
  default_backend: str
  x64_enabled: bool
  devices: tuple[DeviceInfo, ...]
  cuda: CudaInfo | None

  def to_dict(self) -> dict[str, Any]:
    """Returns the report as JSON-ready data."""
    return dataclasses.asdict(self)


def _version(package: str) -> str | None:
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return None


def _cpu_model() -> str | None:
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or None


def _call(module: Any, name: str, *args: Any) -> Any | None:
  try:
    return getattr(module, name)(*args)
  except Exception:  # noqa: BLE001 - a missing or failing binding reports None, never crashes.
    return None


def _compute_capability(device: jax.Device) -> str | None:
  if device.platform != "gpu":
    return None
  capability = getattr(device, "compute_capability", None)
  return None if capability is None else str(capability)


def cuda_info() -> CudaInfo | None:
  """Returns CUDA runtime/driver and cuDNN versions when a GPU is present, else None."""
  if "gpu" not in platforms_present():
    return None
  module = _compat.cuda_versions()
  if module is None:
    return CudaInfo(None, None, None)
  return CudaInfo(
      cuda_runtime_version=_call(module, "cuda_runtime_get_version"),
      cuda_driver_version=_call(module, "cuda_driver_get_version"),
      cudnn_version=_call(module, "cudnn_get_version"),
  )


def _all_devices() -> tuple[DeviceInfo, ...]:
  return tuple(
      DeviceInfo(d.platform, d.id, d.device_kind, d.process_index, _compute_capability(d))
      for platform in platforms_present() for d in jax.devices(platform))


def _default_backend() -> str:
  try:
    return jax.default_backend()
  # JAX_PLATFORMS naming an unknown platform raises RuntimeError; naming one whose plugin is
  # absent (cuda without jax[cuda]) trips an assertion inside jax 0.10.
  except (RuntimeError, AssertionError) as e:
    first = str(e).splitlines()[0] if str(e) else "none of its platforms is installed"
    raise UsageError(f"JAX cannot start a backend with JAX_PLATFORMS="
                     f"{os.environ.get('JAX_PLATFORMS', '')!r}: {first}") from None


def environment_report() -> EnvReport:
  """Collects the environment report for this process.

  Returns:
    An `EnvReport`. Fields that cannot be read here are None; this never raises for a missing GPU.

  Raises:
    UsageError: JAX cannot start any backend (e.g. `JAX_PLATFORMS` names an unknown platform).
  """
  default_backend = _default_backend()
  return EnvReport(
      python=sys.version.split()[0],
      packages={name: _version(name) for name in _PACKAGES},
      machine={
          "system": platform.system(),
          "machine": platform.machine(),
          "cpu_count": os.cpu_count(),
          "cpu_model": _cpu_model(),
      },
      platforms=platforms_present(),
      default_backend=default_backend,
      x64_enabled=x64_enabled(),
      devices=_all_devices(),
      cuda=cuda_info(),
  )


def format_report(report: EnvReport) -> str:
  """Renders the report as aligned text, one fact per line."""
  lines = [f"python          {report.python}"]
  lines += [f"{name:<15} {version or 'not installed'}" for name, version in report.packages.items()]
  lines += [
      f"platforms       {', '.join(report.platforms)}",
      f"default backend {report.default_backend}",
      f"x64 enabled     {report.x64_enabled}",
  ]
  for d in report.devices:
    capability = f" (compute capability {d.compute_capability})" if d.compute_capability else ""
    lines.append(f"device          {d.platform}:{d.id} {d.device_kind}, process {d.process_index}"
                 f"{capability}")
  if report.cuda is None:
    lines.append("cuda            none (no GPU backend)")
  else:
    lines += [
        f"cuda runtime    {report.cuda.cuda_runtime_version}",
        f"cuda driver     {report.cuda.cuda_driver_version}",
        f"cudnn           {report.cuda.cudnn_version}",
    ]
  return "\n".join(lines)
