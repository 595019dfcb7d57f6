"""Data: dataset files -> TFDS builders -> uint8 arrays -> device-resident batches."""
