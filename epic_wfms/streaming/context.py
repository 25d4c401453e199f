"""What every streaming component shares: configuration, the four backends, a publisher."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from epic_wfms.bus import MessageBus, MessageFactory
from epic_wfms.bus.messages import Message, _Payload
from epic_wfms.config import Config
from epic_wfms.ddm import DataManagement
from epic_wfms.store.database import Database
from epic_wfms.wfms import WorkloadExecutor

if TYPE_CHECKING:
    from epic_wfms.wfms.panda.client import PandaConnection
    from epic_wfms.wfms.panda.prompt import PromptSettings


@dataclass
class DetectorView:
    """The detector state as last broadcast on the state topic (stamped on what we publish)."""

    state: str = "off"
    substate: str = "not_ready"


@dataclass
class StreamingContext:
    config: Config
    db: Database
    bus: MessageBus
    ddm: DataManagement
    executor: WorkloadExecutor | None = None  # only roles that run jobs need one
    # wfms.backend panda: the server and how prompt tasks look there (the process role)
    panda: tuple[PandaConnection, PromptSettings] | None = None
    producer: str = "epic-wfms.orchestrator"
    detector: DetectorView = field(default_factory=DetectorView)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        self.factory = MessageFactory(self.producer)

    def message(self, msg_type: str, body: _Payload, run_number: int | None = None) -> Message:
        """A message stamped with this producer and the detector state in effect."""
        return self.factory.make(
            msg_type, body, run_number=run_number,
            state=self.detector.state, substate=self.detector.substate,
        )

    def publish(
        self, destination: str, msg_type: str, body: _Payload, run_number: int | None = None
    ) -> None:
        self.bus.publish(destination, self.message(msg_type, body, run_number))
