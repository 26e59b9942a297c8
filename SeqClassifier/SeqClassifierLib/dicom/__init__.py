"""DICOM stage: tags, header readers, series discovery, the Slicer database reader."""
