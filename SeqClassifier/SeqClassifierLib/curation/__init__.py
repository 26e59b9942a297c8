"""Curation stage: the label store and sorting series into a tidy tree."""
