"""skinjax: skin-lesion classification and segmentation in JAX/Flax."""

__version__ = '0.1.0'
