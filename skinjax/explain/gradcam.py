"""Grad-CAM (Selvaraju et al. 2017; paper 2's eqs. 6-8) for any classifier here.

A model marks the map Grad-CAM explains by passing it through
`skinjax.models.gradcam_map.mark_gradcam_map` (B3: the top activation; DeepConvNet: conv4
after its ReLU).

For class c with score y_c (the logit, before softmax) and the marked map A[h, w, k]:
  weights a_k = mean over (h, w) of dy_c / dA[h, w, k]     (eq. 7, Z = h * w)
  map         = ReLU(sum_k a_k A[:, :, k])                  (eq. 8)
upsampled bilinearly to the input size. The gradient comes from one `jax.vjp` of the
logits with respect to a zero perturbation added to A.
"""

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from skinjax.models.gradcam_map import GRADCAM_MAP


def _only_marked_leaf(tree, collection):
  flat = traverse_util.flatten_dict(tree)
  found = {path: value for path, value in flat.items() if GRADCAM_MAP in path}
  if len(found) != 1:
    raise ValueError(f'expected exactly one map marked with mark_gradcam_map in '
                     f'{collection!r}, found {len(found)}: {sorted(found)}')
  path, value = next(iter(found.items()))
  return path, value


@partial(jax.jit, static_argnames=('model', 'normalize'))
def gradcam(model: nn.Module, variables, images, class_index=None, *, normalize=True):
  """Grad-CAM heatmaps for a batch, in inference mode.

  Args:
    model: a classifier whose forward pass marks one map with `mark_gradcam_map`.
    variables: its {'params', 'batch_stats', ...}.
    images: float[B, H, W, C], as the model takes them.
    class_index: int[B] classes to explain; None explains each image's top class.
    normalize: divide each heatmap by its maximum (an all-zero heatmap stays zero).

  Returns:
    (heatmaps float32[B, H, W] >= 0 (in [0, 1] when normalized), logits float32[B, classes]).
  """
  def forward(perturbations):
    logits, state = model.apply({**variables, 'perturbations': perturbations}, images,
                                train=False, mutable=['intermediates'])
    return logits, state['intermediates']

  # The perturbation's shape, without computing anything.
  _, shapes = jax.eval_shape(lambda: model.apply(variables, images, train=False,
                                                 mutable=['perturbations']))
  path, _ = _only_marked_leaf(shapes['perturbations'], 'perturbations')
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes['perturbations'])
  logits, vjp, intermediates = jax.vjp(forward, zeros, has_aux=True)
  if class_index is None:
    class_index = jnp.argmax(logits, axis=-1)
  # Inference mode keeps examples independent, so one backward pass of the summed class
  # scores gives every example its own gradient.
  seed = jax.nn.one_hot(class_index, logits.shape[-1], dtype=logits.dtype)
  (gradients,) = vjp(seed)
  gradients = traverse_util.flatten_dict(gradients)[path].astype(jnp.float32)
  _, (feature_map,) = _only_marked_leaf(intermediates, 'intermediates')
  feature_map = feature_map.astype(jnp.float32)
  weights = gradients.mean(axis=(1, 2), keepdims=True)  # eq. 7
  cam = nn.relu((weights * feature_map).sum(axis=-1))  # eq. 8
  batch, height, width = images.shape[:3]
  cam = jax.image.resize(cam, (batch, height, width), 'bilinear')
  cam = jnp.maximum(cam, 0.0)  # bilinear weights are convex, but keep it exact
  if normalize:
    peak = cam.max(axis=(1, 2), keepdims=True)
    cam = jnp.where(peak > 0, cam / jnp.where(peak > 0, peak, 1.0), 0.0)
  return cam, logits
