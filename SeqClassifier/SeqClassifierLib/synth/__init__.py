"""Synthetic prostate (and neuro) MR DICOM studies for training and tests."""
