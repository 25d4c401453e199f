import json
import queue
import threading
import uuid
from datetime import UTC

import pytest
from sqlalchemy import select

from epic_wfms.bus import InProcessTransport, MessageBus, MessageFactory, decode, encode, testbed
from epic_wfms.bus import destinations as dest
from epic_wfms.bus import messages as m
from epic_wfms.bus.stomp import StompSettings, StompTransport
from epic_wfms.errors import MalformedMessageError
from epic_wfms.store.database import Database
from epic_wfms.store.ledger import StoreLedger
from epic_wfms.store.schema import DeadLetterRecord
from tests.conftest import wait_for


@pytest.fixture
def db(database_url):
    database = Database(database_url)
    database.create_schema()
    return database


@pytest.fixture
def bus(db):
    message_bus = MessageBus(InProcessTransport(), StoreLedger(db), retry_backoff_s=0.001)
    yield message_bus
    message_bus.close()


def dead_letters(db):
    with db.session() as session:
        return list(session.scalars(select(DeadLetterRecord)))


def test_envelope_round_trip_and_per_run_sequence():
    factory = MessageFactory("daq")
    first = factory.make("start_run", m.RunBoundary(run_number=5), run_number=5, state="run",
                         substate="physics")
    second = factory.make("pause_run", m.RunBoundary(run_number=5), run_number=5)
    other = factory.make("start_run", m.RunBoundary(run_number=6), run_number=6)
    assert (first.envelope.seq, second.envelope.seq, other.envelope.seq) == (0, 1, 0)
    decoded = decode(encode(first))
    assert decoded == first and decoded.envelope.schema_version == m.SCHEMA_VERSION
    assert first.msg_id != second.msg_id


def valid_body() -> dict:
    msg = MessageFactory("t").make("start_run", m.RunBoundary(run_number=5), run_number=5)
    return json.loads(encode(msg))


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: "{not json", "not valid JSON"),
        (lambda d: "[1, 2]", "not a JSON object"),
        (lambda d: {**d, "msg_id": None}, "msg_id"),
        (lambda d: {**d, "msg_type": "teleport"}, "unknown msg_type 'teleport'"),
        (lambda d: {**d, "schema_version": "2.0"}, "schema version 2.0 is not supported"),
        (lambda d: {**d, "payload": {"run_number": "five"}}, "payload of start_run is invalid"),
    ],
)
def test_malformed_messages_are_dead_lettered_not_dropped(db, bus, mutate, expected):
    handled = []
    bus.subscribe("/queue/t", "sub", handled.append)
    raw = mutate(valid_body())
    body = raw if isinstance(raw, str) else json.dumps(raw)
    with pytest.raises(MalformedMessageError, match=expected.split("'")[0]):
        decode(body)
    bus.publish_raw("/queue/t", body)
    assert bus.wait_idle(5)
    assert handled == []
    letters = dead_letters(db)
    assert len(letters) == 1 and letters[0].body == body and expected in letters[0].reason


def test_duplicate_delivery_is_handled_once(db, bus):
    handled = []
    bus.subscribe("/queue/t", "sub", handled.append)
    message = MessageFactory("t").make("start_run", m.RunBoundary(run_number=5), run_number=5)
    for _ in range(3):
        bus.publish("/queue/t", message)
    assert bus.wait_idle(5)
    assert handled == [message]


def test_failing_handler_is_retried_then_dead_lettered(db, bus):
    calls = []

    def flaky(message):
        calls.append(message.msg_id)
        if len(calls) < 2:
            raise RuntimeError("transient")

    def broken(message):
        raise ValueError("always broken")

    bus.subscribe("/queue/flaky", "flaky", flaky)
    bus.subscribe("/queue/broken", "broken", broken)
    factory = MessageFactory("t")
    bus.publish("/queue/flaky", factory.make("start_run", m.RunBoundary(run_number=1)))
    bus.publish("/queue/broken", factory.make("start_run", m.RunBoundary(run_number=2)))
    assert bus.wait_idle(5)
    assert len(calls) == 2
    letters = dead_letters(db)
    assert [letter.subscription for letter in letters] == ["broken"]
    assert "failed 3 times" in letters[0].reason and "always broken" in letters[0].reason


def test_topics_fan_out_queues_compete(bus):
    seen: dict[str, list[str]] = {"a": [], "b": [], "q1": [], "q2": []}
    lock = threading.Lock()

    def collect(name):
        def handler(message):
            with lock:
                seen[name].append(message.msg_id)
        return handler

    bus.subscribe("/topic/news", "a", collect("a"))
    bus.subscribe("/topic/news", "b", collect("b"))
    bus.subscribe("/queue/work", "q1", collect("q1"))
    bus.subscribe("/queue/work", "q2", collect("q2"))
    factory = MessageFactory("t")
    for run in range(1, 21):
        bus.publish("/topic/news", factory.make("start_run", m.RunBoundary(run_number=run)))
        bus.publish("/queue/work", factory.make("start_run", m.RunBoundary(run_number=run)))
    assert bus.wait_idle(5)
    assert len(seen["a"]) == len(seen["b"]) == 20
    assert len(seen["q1"]) + len(seen["q2"]) == 20
    assert not set(seen["q1"]) & set(seen["q2"])
    with pytest.raises(ValueError, match="must start with '/topic/'"):
        bus.publish("epic.stf", factory.make("start_run", m.RunBoundary(run_number=1)))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("[1, 2]", "not a JSON object with a msg_type"),
        ('{"msg_type": "start_run", "run_id": "abc"}', "no usable run_id"),
        ('{"msg_type": "end_run", "run_id": "7"}', "lacks total_stf_files"),
        ('{"msg_type": "stf_gen", "run_id": "7", "sequence": 1}', "lacks filename, timestamp"),
    ],
)
def test_unreadable_testbed_messages_say_why(data, expected):
    """What the bridge dead-letters (docs/messages.md#testbed); the testbed's own messages
    are proven in tests/test_testbed.py, built by its own code."""
    with pytest.raises(MalformedMessageError, match=expected):
        message = testbed.parse(data)
        if message["msg_type"] == "stf_gen":
            testbed.stf_announcement(message, UTC)
        else:
            testbed.run_control(message, MessageFactory("adapter"))


@pytest.mark.parametrize(
    ("data", "namespace", "why"),
    [
        ({"msg_type": "start_run", "namespace": "alice"}, "bob", "namespace 'alice'"),
        ({"msg_type": "start_run"}, "bob", "namespace '\\(none\\)'"),
        ({"msg_type": "stf_ready", "namespace": "bob"}, "bob", "testbed's agents"),
        ({"msg_type": "tf_file_registered", "namespace": "bob"}, "bob", "testbed's agents"),
    ],
)
def test_testbed_messages_of_others_are_ignored_not_dead_lettered(data, namespace, why):
    with pytest.raises(testbed.Ignored, match=why):
        testbed.check_followed(data, namespace)
    testbed.check_followed({"msg_type": "stf_gen", "namespace": "bob"}, "bob")  # followed


def test_namespaces_prefix_our_destinations_but_not_external_ones():
    from epic_wfms.bus import destinations as dest
    from epic_wfms.bus.stomp import namespaced

    assert namespaced("/queue/epic.archive", "bnl-prod") == "/queue/bnl-prod.epic.archive"
    assert namespaced("/topic/epic.state", "") == "/topic/epic.state"
    assert namespaced(dest.TESTBED, "bnl-prod") == "/topic/epictopic"


def test_installations_sharing_a_broker_each_get_every_testbed_message():
    """The testbed's topic is not namespaced: each installation's bridge needs a durable
    subscription of its own (on RabbitMQ one name would make them competing consumers)."""
    from epic_wfms.streaming.testbed_bridge import topic_subscription

    installations = [f"test-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    got = {ns: queue.Queue() for ns in installations}
    bridges = [StompTransport(StompSettings(namespace=ns, client_id=f"ingest-{ns}",
                                            queue_expiry_s=60)) for ns in installations]
    testbed_side = StompTransport(StompSettings(client_id="testbed"))
    try:
        for ns, transport in zip(installations, bridges, strict=True):
            transport.subscribe(dest.TESTBED, topic_subscription(ns), got[ns].put)
        marker = uuid.uuid4().hex
        for i in range(6):
            testbed_side.send(dest.TESTBED, f"{marker}-{i}")
        for ns in installations:
            seen = set()
            while len(seen) < 6:
                body = got[ns].get(timeout=20)
                if body.startswith(marker):
                    seen.add(body)
    finally:
        for transport in (*bridges, testbed_side):
            transport.close()


def test_a_durable_topic_subscription_outlives_its_agent_process():
    """A restarted agent (new pid) gets what was broadcast while it was down, from the same
    durable subscription, instead of leaving an orphan one on the broker (STOMP broker)."""
    namespace = f"test-{uuid.uuid4().hex[:8]}"

    def transport(agent: str) -> StompTransport:
        return StompTransport(StompSettings(namespace=namespace, client_id=agent,
                                            queue_expiry_s=60))

    received: queue.Queue[str] = queue.Queue()
    sender = transport("daq@host:1")
    first = transport("merge@host:100")
    try:
        first.subscribe(dest.EVENTS, "watcher", received.put)
        sender.send(dest.EVENTS, "before the crash")
        assert received.get(timeout=20) == "before the crash"
        first.close()  # the agent dies; its subscription stays on the broker
        sender.send(dest.EVENTS, "while it was down")
        second = transport("merge@host:200")  # restarted: another pid, the same role
        try:
            second.subscribe(dest.EVENTS, "watcher", received.put)
            assert received.get(timeout=20) == "while it was down"
            # ActiveMQ keys a durable subscription by client-id + name (Artemis names its
            # queue so): the subscription's client-id must not carry the agent's pid
            ids = {t._subscriptions[0].client_id() for t in (first, second)}
            assert ids == {f"{namespace}.watcher"}
        finally:
            second.close()
    finally:
        sender.close()


def test_an_unsubscribed_queue_consumer_takes_no_more_messages():
    """A consumer that was waiting for a message when it was unsubscribed (a fast-path
    worker retired by the autoscaler) leaves the next message to the others (issue 19)."""
    transport = InProcessTransport()
    seen: dict[str, list[str]] = {"a": [], "b": []}
    busy, go_on = threading.Event(), threading.Event()

    def b(body: str) -> None:
        seen["b"].append(body)
        busy.set()
        go_on.wait(10)

    transport.subscribe("/queue/work", "b", b)
    transport.send("/queue/work", "first")
    assert busy.wait(10)  # "b" holds a message: "a" will be the only consumer waiting
    transport.subscribe("/queue/work", "a", seen["a"].append)
    inbox = transport._queues["/queue/work"]
    assert wait_for(lambda: len(inbox.not_empty._waiters) == 1, 10)  # (CPython's Queue)
    transport.unsubscribe("/queue/work", "a")  # while it waits
    for n in range(20):
        transport.send("/queue/work", f"m{n}")
    go_on.set()
    assert transport.wait_idle(10)
    transport.close()
    assert seen["a"] == []
    assert sorted(seen["b"]) == sorted(["first"] + [f"m{n}" for n in range(20)])
