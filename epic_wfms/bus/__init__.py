"""Message bus: versioned JSON schema, destinations, transports (in-process and STOMP)."""

from epic_wfms.bus.bus import DeliveryLedger, MessageBus
from epic_wfms.bus.inprocess import InProcessTransport
from epic_wfms.bus.messages import SCHEMA_VERSION, Message, MessageFactory, decode, encode

__all__ = [
    "SCHEMA_VERSION",
    "DeliveryLedger",
    "InProcessTransport",
    "Message",
    "MessageBus",
    "MessageFactory",
    "decode",
    "encode",
]
