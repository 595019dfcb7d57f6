"""TrainState: everything a step updates, as one pytree; and Keras' Adam."""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax


class TrainState(flax.struct.PyTreeNode):
  """step int32[], params, batch_stats (BatchNorm running statistics) and opt_state.

  nonfinite_steps counts the steps whose loss or gradient was not finite (their update
  was not applied); first_nonfinite_step is the step number of the first, or -1.
  """

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
  nonfinite_steps: jax.Array = np.int32(0)
  first_nonfinite_step: jax.Array = np.int32(-1)

  def apply_gradients(self, grads, batch_stats):
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
    return self.replace(step=self.step + 1, params=optax.apply_updates(self.params, updates),
                        batch_stats=batch_stats, opt_state=opt_state)


def init_variables(rng, model, input_shape) -> dict:
  """`model`'s variables ({'params', maybe 'batch_stats'}) for inputs of `input_shape`."""
  init = jax.jit(lambda key: model.init(key, jnp.zeros(input_shape, jnp.float32), train=False))
  # Initialisation runs unsharded, so it needs no partitionable threefry; on XLA:CPU the
  # partitionable form made U-Net's init compile 5x slower (21 s vs 4 s, 2 cores).
  with jax.threefry_partitionable(False):
    return init(rng)


def create_train_state(rng, model, input_shape, tx) -> TrainState:
  """Initialises `model` on zeros of `input_shape` ([B, H, W, C]) and `tx` on its params."""
  variables = init_variables(rng, model, input_shape)
  params = variables['params']
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables.get('batch_stats', {}),
                    opt_state=tx.init(params), tx=tx)


def keras_adam(learning_rate) -> optax.GradientTransformation:
  """Adam with Keras' defaults (epsilon 1e-7; optax's default is 1e-8), as the papers used."""
  return optax.adam(learning_rate, b1=0.9, b2=0.999, eps=1e-7)
