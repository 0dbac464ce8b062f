"""Training data: the synthetic set and IDX files, on-disk shards, augmentation, the loading pipeline."""
