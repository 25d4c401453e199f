"""ePIC plugins for PanDA Harvester (imported by Harvester's PluginFactory by module path).

``standing_pool`` imports without Harvester (its arithmetic is tested in our own venv; where
``pandaharvester`` is importable it subclasses the real base classes); ``local_batch`` runs
only inside Harvester. The contract: plugins/harvester/README.md.
"""
