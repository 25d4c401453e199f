"""ePIC plugins for PanDA Harvester (imported by Harvester's PluginFactory by module path).

Duck-typed: Harvester is not on PyPI, so nothing here needs ``pandaharvester`` to import;
where it is importable the plugins subclass its real base classes.
"""
