"""The one place where backends are chosen from configuration (embedded today)."""

from __future__ import annotations

from dataclasses import dataclass

from epic_wfms.bus import InProcessTransport, MessageBus
from epic_wfms.config import Config
from epic_wfms.ddm import DataManagement, EmbeddedDDM, LocalRSE
from epic_wfms.store.database import Database
from epic_wfms.store.ledger import StoreLedger
from epic_wfms.wfms import WorkloadExecutor
from epic_wfms.wfms.embedded import LocalWorkerPool


@dataclass
class Backends:
    db: Database
    bus: MessageBus
    ddm: DataManagement
    executor: WorkloadExecutor

    def close(self) -> None:
        self.executor.shutdown()
        self.bus.close()
        self.db.dispose()


def open_database(config: Config) -> Database:
    db = Database(config.db_url)
    db.create_schema()
    return db


def build_backends(config: Config) -> Backends:
    db = open_database(config)
    rses = [
        LocalRSE(r.name, r.site, r.type, (config.data_dir / "rses" / r.name).resolve())
        for r in config.rses
    ]
    bus = MessageBus(InProcessTransport(), StoreLedger(db))
    executor = LocalWorkerPool(db, {site.name: site.slots for site in config.sites})
    return Backends(db, bus, EmbeddedDDM(db, rses), executor)
