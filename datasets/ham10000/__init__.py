"""HAM10000 dataset builder (`tfds build datasets/ham10000 --manual_dir=...`)."""
