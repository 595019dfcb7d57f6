"""Explanations and unsupervised segmentation: Grad-CAM and k-means colour clustering."""
