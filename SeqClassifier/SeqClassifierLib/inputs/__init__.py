"""Inputs stage: what the model sees of a series (metadata features, the center-slice image, study context)."""
