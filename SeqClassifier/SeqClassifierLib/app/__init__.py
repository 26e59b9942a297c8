"""Application stage: the command line, output formats, progress, background process."""
