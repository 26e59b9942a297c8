"""Slicer-side helpers of the SeqClassifier extension.

* :mod:`.scene` builds and tags MRML nodes; it imports ``slicer`` (works with
  the ``slicer-core`` wheel, no application) but never ``qt`` or ``ctk``.
* :mod:`.review` is plain Python: the review table's rows, presets,
  confidence colours and thumbnail scaling, shared by the module widget and
  its tests; also what a series is loaded as (label, confirmed).
* :mod:`.session` runs classification in a background process and keeps the
  panel's rows and the label store in step (plain Python).
* :mod:`.site`: the site memory in the panel (``--adapt`` the store, confirmations join the
  site file at once, the shipped model's answers on a switch) (plain Python).
* :mod:`.dependencies` lists the missing Python requirements and those already
  imported (a restart is needed after updating them) (plain Python).
* :mod:`.compat`: every difference between Slicer 5.8, 5.10 and 5.12 the module meets.
* :mod:`.logic` (imports ``slicer``, no Qt): the module's logic; :mod:`.loaded`: the
  "series loaded in the scene" source; :mod:`.options`: source/preset Enums;
  :mod:`.dicom_plugin`: the DICOM plugin; :mod:`.selftest`: the self-test body.

Nothing here is imported by :mod:`SeqClassifierLib`, which stays free of
Slicer.
"""
