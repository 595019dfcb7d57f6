"""skinjax.models.conv2d computes lax.conv_general_dilated, value and both gradients."""

import collections
import os
from pathlib import Path
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from skinjax.models import conv2d, create_model
from skinjax.train.state import init_variables

REPO = Path(__file__).resolve().parent.parent
NHWC = ('NHWC', 'HWIO', 'NHWC')
CASES = [  # (x shape, kernel shape, strides, padding): odd sides, strides, explicit pads
    ((2, 9, 9, 3), (3, 3, 3, 4), (1, 1), 'SAME'),
    ((2, 10, 12, 4), (3, 3, 4, 5), (2, 2), 'SAME'),
    ((1, 9, 7, 2), (3, 3, 2, 3), (2, 1), 'SAME'),
    ((2, 8, 8, 3), (3, 3, 3, 2), (1, 1), 'VALID'),
    ((1, 11, 11, 2), (5, 3, 2, 2), (1, 2), ((2, 1), (0, 3))),
    ((2, 6, 6, 2), (1, 1, 2, 3), (1, 1), 'SAME'),
]


EIGEN = '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution'


@pytest.fixture(params=['eigen', 'defaults'])
def xla_flags(request, monkeypatch):
  """Both of conv2d's choices: the padded kernel gradient (with the flag the launchers
  set) and lax's own (XLA's defaults). The choice is read when a function is traced."""
  if request.param == 'eigen':
    monkeypatch.setenv('XLA_FLAGS', EIGEN)
  else:
    monkeypatch.delenv('XLA_FLAGS', raising=False)
  return request.param


def _inputs(x_shape, kernel_shape, seed=0):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.normal(size=x_shape), jnp.float32),
          jnp.asarray(rng.normal(size=kernel_shape), jnp.float32))


def _loss(conv, strides, padding, x, kernel):
  y = conv(x, kernel, strides, padding, dimension_numbers=NHWC)
  # Weights make every output element's gradient different.
  return jnp.sum(y * jnp.arange(y.size, dtype=y.dtype).reshape(y.shape) / y.size)


@pytest.mark.parametrize('x_shape, kernel_shape, strides, padding', CASES)
def test_value_and_gradients_match_lax(x_shape, kernel_shape, strides, padding, xla_flags):
  x, kernel = _inputs(x_shape, kernel_shape)
  want_y = lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=NHWC)
  got_y = jax.jit(lambda x, k: conv2d.conv_general_dilated(
      x, k, strides, padding, dimension_numbers=NHWC))(x, kernel)
  np.testing.assert_allclose(got_y, want_y, rtol=1e-5, atol=1e-5)
  want = jax.grad(lambda x, k: _loss(lax.conv_general_dilated, strides, padding, x, k),
                  argnums=(0, 1))(x, kernel)
  got = jax.jit(jax.grad(
      lambda x, k: _loss(conv2d.conv_general_dilated, strides, padding, x, k),
      argnums=(0, 1)))(x, kernel)
  for name, g, w in zip(('input', 'kernel'), got, want):
    assert g.shape == w.shape, name
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4, err_msg=name)


def test_kernel_gradient_is_the_padded_one_with_eigen_convolutions(xla_flags):
  """With the flag, the CPU branch lowered here holds the explicit pad the kernel gradient
  convolves over, which lax's own gradient does not; without it, no pad."""
  x, kernel = _inputs((2, 8, 8, 3), (3, 3, 3, 4))
  grad = lambda conv: jax.jit(jax.grad(lambda k: _loss(conv, (1, 1), 'SAME', x, k)))
  ours = grad(conv2d.conv_general_dilated).lower(kernel).as_text()
  theirs = grad(lax.conv_general_dilated).lower(kernel).as_text()
  assert 'stablehlo.pad' not in theirs
  assert ('stablehlo.pad' in ours) == (xla_flags == 'eigen')


@pytest.mark.parametrize('flags, eigen', [
    ('', False),
    (EIGEN, True),
    (f'--xla_dump_to=/tmp/x {EIGEN} --xla_cpu_use_xnnpack=true', True),
    ('--xla_cpu_experimental_ynn_fusion_type=individual_convolution', False),
    (f'{EIGEN} --xla_cpu_experimental_ynn_fusion_type=dot', False),  # the last one counts
    ('--xla_cpu_experimental_ynn_fusion_type=dot,-individual_convolution', True),
])
def test_eigen_convolutions_reads_the_last_setting_of_the_flag(monkeypatch, flags, eigen):
  monkeypatch.setenv('XLA_FLAGS', flags)
  assert conv2d.eigen_convolutions() is eigen


def test_bfloat16_follows_lax(xla_flags):
  x, kernel = _inputs((2, 8, 8, 4), (3, 3, 4, 4))
  x, kernel = x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16)
  got = jax.grad(lambda k: _loss(conv2d.conv_general_dilated, (1, 1), 'SAME', x, k)
                 .astype(jnp.float32))(kernel)
  want = jax.grad(lambda k: _loss(lax.conv_general_dilated, (1, 1), 'SAME', x, k)
                  .astype(jnp.float32))(kernel)
  assert got.dtype == jnp.bfloat16
  np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=2e-2,
                             atol=2e-2)


@pytest.mark.parametrize('kwargs', [dict(feature_group_count=2), dict(rhs_dilation=(2, 2)),
                                    dict(lhs_dilation=(2, 2))])
def test_other_convolutions_are_lax_own(monkeypatch, kwargs):
  """Even with the padded gradient on, a grouped or dilated convolution and its gradient
  lower to exactly what lax's do."""
  monkeypatch.setenv('XLA_FLAGS', EIGEN)
  x, kernel = _inputs((1, 9, 9, 4), (3, 3, 4 // kwargs.get('feature_group_count', 1), 4))
  pads = ((1, 1), (1, 1))  # lax takes no 'SAME' with an input dilation

  def lowered(conv):
    def loss(x, k):
      return jnp.sum(conv(x, k, (1, 1), pads, dimension_numbers=NHWC, **kwargs))
    return jax.jit(jax.grad(loss, argnums=(0, 1))).lower(x, kernel).as_text()

  assert lowered(conv2d.conv_general_dilated) == lowered(lax.conv_general_dilated)


def test_flax_conv_uses_it_with_the_same_parameters(xla_flags):
  x, _ = _inputs((2, 8, 8, 3), (3, 3, 3, 4))
  ours = nn.Conv(4, (3, 3), conv_general_dilated=conv2d.conv_general_dilated)
  theirs = nn.Conv(4, (3, 3))
  variables = theirs.init(jax.random.key(0), x)
  assert (jax.tree.map(jnp.shape, ours.init(jax.random.key(0), x))
          == jax.tree.map(jnp.shape, variables))
  np.testing.assert_allclose(ours.apply(variables, x), theirs.apply(variables, x),
                             rtol=1e-5, atol=1e-5)


def test_unet_gradients_match_lax_convolutions(monkeypatch):
  """The whole U-Net: the same loss gradient with lax's convolutions swapped back in."""
  monkeypatch.setenv('XLA_FLAGS', EIGEN)
  model = create_model('unet', base_width=4)
  images = _inputs((2, 32, 32, 3), (1, 1, 1, 1))[0]
  variables = init_variables(jax.random.key(0), model, (1, 32, 32, 3))

  def grads():
    def loss(params):
      logits, _ = model.apply({**variables, 'params': params}, images, train=True,
                              rngs={'dropout': jax.random.key(1)}, mutable=['batch_stats'])
      return jnp.mean(jax.nn.sigmoid(logits))
    return jax.jit(jax.grad(loss))(variables['params'])

  ours = grads()
  monkeypatch.setattr(conv2d, 'conv_general_dilated', lax.conv_general_dilated)
  theirs = grads()
  flat_ours, flat_theirs = jax.tree.leaves(ours), jax.tree.leaves(theirs)
  assert len(flat_ours) == len(flat_theirs)
  for a, b in zip(flat_ours, flat_theirs):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_the_padded_gradient_is_on_with_the_launchers_flags(monkeypatch):
  """conv2d reads the flag launch/xla_flags.py adds: the two must name the same one."""
  sys.path.insert(0, str(REPO / 'launch'))
  try:
    import xla_flags  # pylint: disable=import-outside-toplevel
  finally:
    sys.path.remove(str(REPO / 'launch'))
  monkeypatch.setenv('XLA_FLAGS', ' '.join(xla_flags.CPU_FLAGS))
  assert conv2d.eigen_convolutions()


def test_kernel_gradient_benchmark_times_every_unet_layer():
  """benchmarks/conv_kernel_grad.py at a tiny U-Net: one row per distinct layer, whose
  counts add up to U-Net's 3x3 convolutions, and a total (its values are not asserted)."""
  width, size, depth = 2, 32, 2
  done = subprocess.run(
      [sys.executable, str(REPO / 'benchmarks' / 'conv_kernel_grad.py'),
       f'--base_width={width}', f'--image_size={size}', f'--depth={depth}', '--windows=1',
       '--min_window_s=0.001'], capture_output=True, text=True, timeout=300,
      env={**os.environ, 'XLA_FLAGS': EIGEN})
  assert done.returncode == 0, done.stderr[-3000:]
  rows = [[cell.strip() for cell in line.split('|')[1:3]]
          for line in done.stdout.splitlines() if line.startswith('| ') and '->' in line]
  model = create_model('unet', base_width=width, depth=depth)
  params = init_variables(jax.random.key(0), model, (1, size, size, 3))['params']
  kernels = [leaf.shape for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
             if path[-1].key == 'kernel' and leaf.shape[:2] == (3, 3)]
  timed = collections.Counter()
  for layer, count in rows:
    c_in, c_out = map(int, layer.split()[1].split('->'))
    timed[(c_in, c_out)] += int(count)
  assert timed == collections.Counter(shape[2:] for shape in kernels)
  assert any(line.startswith('| U-Net total') for line in done.stdout.splitlines())
