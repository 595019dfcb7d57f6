"""PH2 dataset builder (`tfds build datasets/ph2 --manual_dir=...`)."""
