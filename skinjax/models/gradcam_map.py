"""How a model marks the feature map that Grad-CAM explains (skinjax.explain.gradcam).

Marking is the model's part of Grad-CAM: the explanation itself lives above the models
and finds the map by this name. Marking costs nothing in training: only Grad-CAM asks for
the two collections it feeds.
"""

import flax.linen as nn

GRADCAM_MAP = 'gradcam_map'


def mark_gradcam_map(module: nn.Module, feature_map):
  """Identity on `feature_map` [B, h, w, K]; marks it as the map Grad-CAM explains.

  Call it inside a compact method. It records the map in 'intermediates' and adds the
  'perturbations' variable of the same name only when a caller asks for those
  collections (Grad-CAM does); `init` creates no variable for it.
  """
  if module.is_initializing():
    return feature_map
  feature_map = module.perturb(GRADCAM_MAP, feature_map)
  module.sow('intermediates', GRADCAM_MAP, feature_map)
  return feature_map
