"""A function's identity without tracing it: the key of `compile_cache.load_or_compile`.

Hashing a function's bytecode, constants and closure is a heuristic, not a proof of equality:
`function_fingerprint` says what it covers and what it does not.
"""

import functools
import hashlib
import os
import types
from collections.abc import Callable
from typing import Any

import jax
import jaxlib
import numpy as np

# Code from these packages is identified by name: their versions are part of the cache key.
_VERSIONED_PACKAGES = tuple(os.path.dirname(m.__file__) + os.sep for m in (jax, jaxlib, np))
_SIMPLE = (type(None), bool, int, float, complex, str, bytes)


class Unfingerprintable(ValueError):
  """A function reaches an object whose identity cannot be written into a key."""


def _feed(h: Any, obj: Any, seen: set[int]) -> None:
  """Writes `obj`'s identity into hash `h`, following functions into their code and closures."""
  h.update(type(obj).__qualname__.encode() + b"\0")
  if isinstance(obj, _SIMPLE):
    h.update(repr(obj).encode() + b"\0")
    return
  if id(obj) in seen:
    return
  seen.add(id(obj))
  if isinstance(obj, (tuple, list)):
    for item in obj:
      _feed(h, item, seen)
  elif isinstance(obj, dict):
    for k in sorted(obj, key=repr):
      _feed(h, k, seen)
      _feed(h, obj[k], seen)
  elif isinstance(obj, (set, frozenset)):
    _feed(h, sorted(obj, key=repr), seen)
  elif isinstance(obj, (types.ModuleType, type, types.BuiltinFunctionType)):
    h.update(f"{getattr(obj, '__module__', '')}.{obj.__name__}".encode())
  elif isinstance(obj, (np.ndarray, np.generic, jax.Array)):
    value = np.asarray(obj)
    h.update(f"{value.dtype}{value.shape}".encode() + hashlib.sha256(value.tobytes()).digest())
  elif isinstance(obj, np.dtype):
    h.update(obj.str.encode())
  elif isinstance(obj, functools.partial):
    _feed(h, (obj.func, obj.args, obj.keywords), seen)
  elif isinstance(obj, types.FunctionType):
    _feed_function(h, obj, seen)
  elif isinstance(obj, types.CodeType):
    _feed(h, (obj.co_code, obj.co_consts, obj.co_names, obj.co_varnames, obj.co_argcount,
              obj.co_kwonlyargcount, obj.co_flags), seen)
  elif hasattr(obj, "__wrapped__"):  # jax.jit(f) and other wrappers
    _feed(h, obj.__wrapped__, seen)
  elif " at 0x" in repr(obj):
    raise Unfingerprintable(f"cannot fingerprint {type(obj).__qualname__} {obj!r}: its repr "
                            "names a memory address")
  else:
    h.update(repr(obj).encode())


def _global_names(code: types.CodeType) -> set[str]:
  names = set(code.co_names)
  for const in code.co_consts:
    if isinstance(const, types.CodeType):
      names |= _global_names(const)
  return names


def _feed_function(h: Any, fn: types.FunctionType, seen: set[int]) -> None:
  code = fn.__code__
  h.update(f"{fn.__module__}.{fn.__qualname__}".encode())
  cells = [c.cell_contents for c in fn.__closure__ or () if c.cell_contents is not None]
  _feed(h, (fn.__defaults__, fn.__kwdefaults__, cells), seen)
  if code.co_filename.startswith(_VERSIONED_PACKAGES):
    h.update(f"{os.path.basename(code.co_filename)}:{code.co_firstlineno}".encode())
    return
  _feed(h, code, seen)
  for name in sorted(_global_names(code) & fn.__globals__.keys()):
    h.update(name.encode())
    _feed(h, fn.__globals__[name], seen)


def function_fingerprint(fn: Callable[..., Any]) -> str:
  """A hex digest of what `fn` computes, as far as it can be seen without tracing it.

  It covers the function's module and name, its bytecode and constants, its defaults, the values
  in its closure and the module-level names its code uses, recursively through every Python
  function reached that way (the closure of `jax.value_and_grad(f)` holds `f` and `argnums`).
  Functions defined in jax, jaxlib and NumPy are identified by name and line only: their versions
  are in the executable key.

  Raises:
    Unfingerprintable: something reached has no stable identity (an object whose repr is a
      memory address).
  """
  h = hashlib.sha256()
  _feed(h, fn, set())
  return h.hexdigest()
