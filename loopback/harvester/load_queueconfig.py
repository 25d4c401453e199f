"""Load a queue configuration with Harvester's own ``QueueConfigMapper`` (run in Harvester's
venv, ``PANDA_HOME`` set, no epic_wfms imports); print what Harvester made of it as JSON.

Harvester drops a queue it cannot load with an ERROR line in its mapper's log, and loads the
rest: this prints every queue it kept (with its map type, limits and plugin sections), which
of them are active, each plugin section that its ``PluginFactory`` could not turn into
a plugin object (the constructor's error), and the classes each plugin class derives from.
"""

import json

from pandaharvester.harvestercore.communicator_pool import CommunicatorPool
from pandaharvester.harvestercore.db_proxy_pool import DBProxyPool
from pandaharvester.harvestercore.plugin_factory import PluginFactory
from pandaharvester.harvestercore.queue_config_mapper import QueueConfigMapper

PLUGIN_SECTIONS = ("preparator", "submitter", "workerMaker", "messenger", "stager", "monitor",
                   "sweeper", "throttler")


def main() -> None:
    mapper = QueueConfigMapper()
    DBProxyPool().make_tables(mapper, CommunicatorPool())
    mapper.load_data()
    factory = PluginFactory()
    queues, broken, bases = {}, {}, {}
    for name, config in mapper.get_all_queues().items():
        plugins = {key: [getattr(config, key)["module"], getattr(config, key)["name"]]
                   for key in PLUGIN_SECTIONS if hasattr(config, key)}
        queues[name] = {"mapType": config.mapType, "truePilot": config.truePilot,
                        "maxWorkers": config.maxWorkers, "plugins": plugins}
        for key in plugins:
            try:
                plugin = factory.get_plugin(getattr(config, key))
            except Exception as error:  # any constructor failure is reported
                broken[f"{name}.{key}"] = f"{type(error).__name__}: {error}"
                continue
            if plugin is None:
                broken[f"{name}.{key}"] = "PluginFactory returned no plugin"
                continue
            bases[type(plugin).__name__] = [f"{c.__module__}.{c.__qualname__}"
                                            for c in type(plugin).__mro__]
    print(json.dumps({"queues": queues, "active": sorted(mapper.get_active_queues()),
                      "broken_plugins": broken, "bases": bases}))


if __name__ == "__main__":
    main()
