"""The epic-wfms command line."""
