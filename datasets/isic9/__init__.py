"""Paper 2's 9-class ISIC dataset builder (`tfds build datasets/isic9 --manual_dir=...`)."""
