"""Training stage: the recipe, metrics and evaluation."""
