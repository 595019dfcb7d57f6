"""Model registry: a name -> a Linen module constructor.

Each constructor takes `num_classes`-style keyword arguments of its module plus `dtype`
(compute), `param_dtype` (storage) and `axis_name` (pmap axis for BatchNorm).
"""

from functools import partial
from typing import Callable

import flax.linen as nn

from skinjax.models.deepconvnet import DeepConvNet
from skinjax.models.unet import UNet

MODELS: dict[str, Callable[..., nn.Module]] = {
    'deepconvnet': DeepConvNet,
    'unet': UNet,
    # Same graph at a quarter of the width, for fast demos and CPU runs.
    'unet_small': partial(UNet, base_width=16),
    # For tests: two channels at the first level and two levels, quick to compile.
    'unet_tiny': partial(UNet, base_width=2, depth=2),
}


def create_model(name: str, **kwargs) -> nn.Module:
  """Builds the registered model `name`; unknown names list the known ones."""
  if name not in MODELS:
    raise ValueError(f'unknown model {name!r}; known models: {", ".join(sorted(MODELS))}')
  return MODELS[name](**kwargs)


__all__ = ['MODELS', 'create_model', 'DeepConvNet', 'UNet']
