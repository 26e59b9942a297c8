"""Model stage: backbones, fusion, checkpoints, the classifier."""
