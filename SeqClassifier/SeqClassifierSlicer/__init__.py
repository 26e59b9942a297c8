"""Slicer-side helpers of the SeqClassifier extension.

* :mod:`.scene` builds and tags MRML nodes; it imports ``slicer`` (works with
  the ``slicer-core`` wheel, no application) but never ``qt`` or ``ctk``.
* :mod:`.review` is plain Python: the review table's rows, presets,
  confidence colours and thumbnail scaling, shared by the module widget and
  its tests; also what a series is loaded as (label, confirmed).
* :mod:`.session` runs classification in a background process and keeps the
  panel's rows and the label store in step (plain Python).
* :mod:`.dependencies`: the Python requirements of the chosen model (its backbone's family picks
  ``Resources/requirements-<family>.txt``) and which are missing (plain Python);
  :mod:`.installer` installs them on 5.8, 5.10 and 5.12 alike (constraints, progress, every
  version change reported with the restart notice).
* :mod:`.review_table`: the panel's table, one row updated per label edit (the ``qt`` module
  is passed in, not imported); :mod:`.store_writes`: label-store writes that never wait for
  the lock on the GUI thread (queued, retried from a QTimer).
* :mod:`.site`: the site memory in the panel (``--adapt`` the store, confirmations join the
  site file at once, the shipped model's answers on a switch) (plain Python).
* :mod:`.compat`: every difference between Slicer 5.8, 5.10 and 5.12 the module meets.
* :mod:`.logic` (imports ``slicer``, no Qt): the module's logic; :mod:`.loaded`: the
  "series loaded in the scene" source; :mod:`.options`: source/preset Enums;
  :mod:`.dicom_plugin`: the DICOM plugin; :mod:`.selftest`: the self-test body.

Nothing here is imported by :mod:`SeqClassifierLib`, which stays free of
Slicer.
"""
