"""Learning the site: a reader's confirmed labels adapt labels and review flags.

The shipped model never changes.  Beside it, a small *site memory* holds the
model's own features (the places of :mod:`SeqClassifierLib.model.ood`: image,
metadata, fused pre-logit vector, header) of every series a reader of this
site confirmed, with the confirmed label and who confirmed it:

* :mod:`.memory`    the numbers: distances in the model's whitened feature space, the kNN blend
                    ``p = (1 - w) p_shipped + w p_knn`` (``w`` = 0 when nothing is close) and the
                    "unlike training data" check against the confirmed series;
* :mod:`.sitefile`  the files beside the label store (JSON + ``.npy``, no pickles), tied to the
                    model's weights hash; export / import between readers;
* :mod:`.hook`      the classifier hook (``Classifier.site``) that turns a shipped prediction into
                    the adapted one, and the recorder of features for later confirmations;
* :mod:`.build`     confirmations from a label store or a ``SeriesInstanceUID,label`` CSV.

Never imports ``slicer`` or ``qt``; numpy only (the features come from the classifier).
"""
