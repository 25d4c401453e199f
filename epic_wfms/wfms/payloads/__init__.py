"""Payloads the embedded workers run as subprocesses (stand-ins for ePIC software)."""
