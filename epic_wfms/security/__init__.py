"""Trust boundaries (docs/security.md): paths confined to their area, private files."""
