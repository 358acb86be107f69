import jax.numpy as jnp
import numpy as np
import pytest

from funcgrad import dtype_table, resolve_dtype, valid_dtype_names

TUTORIAL_ORDER = ["float32", "float64", "float16", "uint8", "int8", "int16", "int32", "int64",
                  "bool", "bfloat16"]


@pytest.mark.parametrize("spec, expected", [
    ("float32", "float32"), ("torch.float32", "float32"), ("torch.float", "float32"),
    ("float", "float32"), ("torch.half", "float16"), ("torch.short", "int16"),
    ("torch.int", "int32"), ("torch.FloatTensor", "float32"), ("torch.cuda.ByteTensor", "uint8"),
    ("torch.bfloat16", "bfloat16"), (np.float32, "float32"), (jnp.bfloat16, "bfloat16"),
    (np.dtype("int8"), "int8"), (jnp.float16, "float16"), (bool, "bool"),
])
def test_resolve_dtype_accepts_every_spelling(spec, expected):
  assert resolve_dtype(spec) == np.dtype(expected)


def test_resolve_dtype_accepts_torch_dtype_objects():
  torch = pytest.importorskip("torch")
  assert resolve_dtype(torch.half) == np.float16
  assert resolve_dtype(torch.int8) == np.int8


@pytest.mark.parametrize("spec", ["float128", "torch.quint8", "", "complex64", np.complex64])
def test_unknown_dtype_lists_valid_names(spec):
  with pytest.raises(ValueError, match=r"(Unknown|Unsupported) dtype .*Valid names: .*float32"):
    resolve_dtype(spec)


@pytest.mark.parametrize("spec", ["float64", "torch.double", "torch.long", "int64", np.float64])
def test_64_bit_without_x64_names_the_flag(spec):
  with pytest.raises(ValueError, match="jax_enable_x64"):
    resolve_dtype(spec)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("spec, expected", [("torch.double", "float64"), ("torch.long", "int64")])
def test_64_bit_with_x64(spec, expected):
  assert resolve_dtype(spec) == np.dtype(expected)
  assert jnp.zeros(2, resolve_dtype(spec)).dtype == np.dtype(expected)


def test_valid_names_cover_torch_aliases():
  names = valid_dtype_names()
  for alias in ["torch.float", "torch.double", "torch.half", "torch.short", "torch.int",
                "torch.long"]:
    assert alias in names


def test_table_has_tutorial_rows_in_order_plus_bfloat16():
  rows = dtype_table()
  assert [r.jax_dtype for r in rows] == TUTORIAL_ORDER
  by_dtype = {r.jax_dtype: r for r in rows}
  assert by_dtype["float64"].torch_names == ("torch.float64", "torch.double")
  assert by_dtype["int64"].torch_cpu_tensor == "torch.LongTensor"
  assert by_dtype["uint8"].torch_gpu_tensor == "torch.cuda.ByteTensor"
  assert [r.jax_dtype for r in rows if r.needs_x64] == ["float64", "int64"]


def test_table_checks_backends_live():
  by_dtype = {r.jax_dtype: r for r in dtype_table(("cpu",))}
  assert by_dtype["float32"].works_on == {"cpu": True}
  assert by_dtype["bfloat16"].works_on == {"cpu": True}
  # Without x64, JAX narrows float64 to float32: the table reports that, never hides it.
  assert by_dtype["float64"].works_on == {"cpu": False}


@pytest.mark.usefixtures("x64")
def test_table_64_bit_rows_work_with_x64():
  by_dtype = {r.jax_dtype: r for r in dtype_table(("cpu",))}
  assert by_dtype["float64"].works_on == {"cpu": True}
  assert by_dtype["int64"].works_on == {"cpu": True}
