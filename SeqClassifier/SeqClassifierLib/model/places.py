"""The places of a fold model whose features the distance scores read (see :mod:`.ood`); torch-free,
so the review rule can name them without importing torch."""

PLACES = ("image", "meta", "fused", "header")
