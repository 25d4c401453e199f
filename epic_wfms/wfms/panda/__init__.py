"""PanDA/JEDI as the execution backend: JEDI task submission, read-back, operations."""
