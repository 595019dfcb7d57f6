"""Dropout with one random draw per example, the same on any device layout.

Flax's `nn.Dropout` draws one mask for the batch it sees from one key: under `jit` that is
the global batch, but under `pmap` each device sees its own rows and folds in its own key,
so the masks change with the device count. Here each example's mask comes from the layer's
key folded with the example's row in the global batch (`global_rows`), so a run draws the
same masks on 1, 2, 4 or 8 devices, under either wrapper, and across processes. Scaling
and the choice of kept units are Keras' (inverted dropout: kept units are divided by the
keep rate).
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


def global_rows(batch_size: int, axis_name: str | None = None) -> jax.Array:
  """int32[batch_size]: each local example's row in the global batch. Under pmap
  (`axis_name` given) device d holds rows d * batch_size ...; under jit the batch is the
  global one already."""
  rows = jnp.arange(batch_size, dtype=jnp.int32)
  if axis_name is None:
    return rows
  return lax.axis_index(axis_name).astype(jnp.int32) * batch_size + rows


def example_keys(key, batch_size: int, axis_name: str | None = None) -> jax.Array:
  """One key per local example: `key` folded with the example's global row."""
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, global_rows(batch_size,
                                                                          axis_name))


class ExampleDropout(nn.Module):
  """Keras Dropout (with broadcast_dims: Keras' noise_shape of ones there) drawn per
  example. x: [B, ...]; the 'dropout' rng must be the same on every device (the train
  step passes it so)."""

  rate: float
  broadcast_dims: Sequence[int] = ()
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x, *, deterministic: bool):
    if deterministic or self.rate == 0.0:
      return x
    keep = 1.0 - self.rate
    if keep == 0.0:
      return jnp.zeros_like(x)
    shape = tuple(1 if axis in self.broadcast_dims else size
                  for axis, size in enumerate(x.shape) if axis > 0)
    keys = example_keys(self.make_rng('dropout'), x.shape[0], self.axis_name)
    masks = jax.vmap(lambda k: jax.random.bernoulli(k, keep, shape))(keys)
    return lax.select(jnp.broadcast_to(masks, x.shape), x / keep, jnp.zeros_like(x))
