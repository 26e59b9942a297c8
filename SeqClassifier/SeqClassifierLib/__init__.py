"""SeqClassifier library: classify the MR series of prostate studies.

Pure Python, importable inside 3D Slicer (the module folder is on Slicer's
path) and installable with pip; it never imports ``slicer`` or ``qt``.  Heavy
dependencies (torch, timm, open_clip) are imported only by the modules that
run models, so discovery and features stay light.

Main entry points:

* :func:`SeqClassifierLib.dicom.discovery.discover_series` - folders -> series records
* :func:`SeqClassifierLib.inputs.features.extract_features` - record -> metadata vector
* :class:`SeqClassifierLib.model.classifier.Classifier` - records -> predictions
* :mod:`SeqClassifierLib.app.cli` - the ``seqclassifier`` command line
"""

__version__ = "0.1.0"
