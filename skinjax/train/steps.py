"""Pure train and eval steps, shared by every parallel wrapper.

Under `pmap` the wrapper passes `axis_name`: gradients are averaged and metrics summed
across devices here, and BatchNorm (built with the same axis name) computes its batch
statistics over all devices. Under `jit` with a sharded batch, XLA inserts the same
collectives, so `axis_name` stays None. Either way one step over a global batch gives
the same result on one device or many.
"""

import jax
import jax.numpy as jnp
from jax import lax

from skinjax.models.dropout import example_keys


def _all_finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in jax.tree.leaves(tree)]))


def train_step(state, metrics, batch, rng, data=None, *, model, task, preprocess=None,
               axis_name=None, skip_nonfinite=False):
  """One optimiser update. Returns (state, metrics merged with this batch's).

  A step whose loss or gradient is not finite changes neither the weights, the optimiser
  nor the metrics; it is counted in state.nonfinite_steps (and the first one's step kept).
  Without `skip_nonfinite` every later update is withheld too, so the state stays the last
  good one until the host (which reads the count before it checkpoints) stops the run.

  Args:
    state: TrainState.
    metrics: EpochMetrics accumulated so far (from task.empty_metrics()).
    batch: {'image': float[B, H, W, C], plus task targets ('label' or 'mask')}; with a
      `preprocess`, what it takes instead (uint8 images, or {'index': int32[B]} into `data`).
    rng: a PRNG key, the same on every device; folded with the step, so the same key may
      be passed every step. Augmentation and dropout draw per example, from it folded
      with the example's row in the global batch (skinjax.models.dropout), so the draws
      do not depend on the device layout.
    data: device-resident arrays that `preprocess` gathers the batch from, or None.
    preprocess: skinjax.data.pipeline.Preprocess (gather, augment, normalise) or None.
  """
  rng = jax.random.fold_in(rng, state.step)
  augment_rng, dropout_rng = jax.random.split(rng)
  if preprocess is not None:
    local_batch = jax.tree.leaves(batch)[0].shape[0]
    batch = preprocess(batch, data, example_keys(augment_rng, local_batch, axis_name),
                       train=True)

  def loss_fn(params):
    variables = {'params': params, 'batch_stats': state.batch_stats}
    logits, updates = model.apply(variables, batch['image'], train=True,
                                  mutable=['batch_stats'], rngs={'dropout': dropout_rng})
    per_example_loss = task.loss(logits, batch)
    return per_example_loss.mean(), (logits, per_example_loss, updates)

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  (_, (logits, per_example_loss, updates)), grads = grad_fn(state.params)
  batch_metrics = task.batch_metrics(logits, batch, per_example_loss, None)
  if axis_name is not None:
    grads = lax.pmean(grads, axis_name)
    batch_metrics = lax.psum(batch_metrics, axis_name)
  # After the cross-device reductions, so every device takes the same decision.
  finite = _all_finite(grads) & jnp.isfinite(batch_metrics.loss.total)
  apply = finite if skip_nonfinite else finite & (state.nonfinite_steps == 0)
  # One branch for the whole update, not a jnp.where per leaf: XLA:CPU took 200 s instead
  # of 29 s to compile B3's step with ~1,800 selects (tests/test_withheld_update.py checks
  # the withheld update). With synchronised BatchNorm the new statistics already agree
  # across devices.
  new_stats = updates.get('batch_stats', state.batch_stats)
  updated = lax.cond(apply, lambda: state.apply_gradients(grads, new_stats),
                     lambda: state.replace(step=state.step + 1))
  state = updated.replace(
      nonfinite_steps=state.nonfinite_steps + jnp.where(finite, 0, 1).astype(jnp.int32),
      first_nonfinite_step=jnp.where((state.first_nonfinite_step < 0) & ~finite,
                                     state.step, state.first_nonfinite_step).astype(jnp.int32))
  merged = metrics.merge(batch_metrics)
  return state, jax.tree.map(lambda n, o: jnp.where(finite, n, o), merged, metrics)


def eval_step(state, metrics, batch, data=None, *, model, task, preprocess=None,
              axis_name=None):
  """Inference-mode forward pass: (metrics merged with this batch's, per-example outputs).

  One application of the model gives both: the metrics of the examples with
  batch['valid'] True (padding counts nowhere) and `task.outputs` of every example.
  """
  if preprocess is not None:
    batch = preprocess(batch, data, None, train=False)
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  logits = model.apply(variables, batch['image'], train=False)
  per_example_loss = task.loss(logits, batch)
  batch_metrics = task.batch_metrics(logits, batch, per_example_loss, batch.get('valid'))
  if axis_name is not None:
    batch_metrics = lax.psum(batch_metrics, axis_name)
  return metrics.merge(batch_metrics), task.outputs(logits)


def predict_step(variables, images, *, model, task, preprocess):
  """`task.outputs` of uint8 images[B, H, W, 3] at the model's resolution, in inference
  mode, through the training pipeline's own preprocessing (no targets needed)."""
  batch = preprocess({'image': images}, None, None, train=False)
  return task.outputs(model.apply(variables, batch['image'], train=False))
