"""Trust boundary of the broker (issue 15, items 1, 2, 5, 6): whoever can publish can send
anything. Each attack is replayed against a running installation: it is refused (dead
letter), nothing is written outside the RSEs, and the run still completes with nothing lost.
The bus's decoding is also fuzzed (hypothesis, bounded)."""

from __future__ import annotations

import json
import os
import queue
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from epic_wfms.bus import InProcessTransport, MessageBus, MessageFactory, decode, encode, screening
from epic_wfms.bus import destinations as dest
from epic_wfms.bus import messages as m
from epic_wfms.bus.stomp import StompSettings, StompTransport
from epic_wfms.errors import MalformedMessageError
from epic_wfms.model import naming
from epic_wfms.store.database import Database
from epic_wfms.store.ledger import StoreLedger
from epic_wfms.store.schema import DeadLetterRecord, IntegrityIssueRecord, StfRecord
from epic_wfms.streaming.report import run_report
from epic_wfms.streaming.run_outcome import shortfall
from tests.conftest import StreamingRig, make_config, private_postgres_schema, wait_for

RUN = 151
TIMEOUT = 60


@pytest.fixture
def inst(tmp_path, daq_settings):
    # forgeries naming the run are its dead letters: hold the run only briefly for them
    installation = StreamingRig(make_config(tmp_path, dead_letter_hold_s=1), daq_settings)
    yield installation
    installation.close()


def dead_letters(db: Database) -> list[DeadLetterRecord]:
    with db.session() as session:
        return list(session.scalars(select(DeadLetterRecord).order_by(DeadLetterRecord.id)))


def forge(inst: StreamingRig, template: m.StfAvailable, path: str | None = None,
          rse: str | None = None, **stf: object) -> str:
    """An attacker's copy of a real announcement, fields changed, sent as raw JSON."""
    message = inst.daq._message("stf_available", template, template.stf.run_number)
    data = json.loads(encode(message))
    data["msg_id"] = uuid.uuid4().hex
    data["payload"]["stf"].update(stf)
    data["payload"]["path"] = path if path is not None else template.path
    data["payload"]["rse"] = rse or template.rse
    body = json.dumps(data)
    inst.bus.publish_raw(dest.STF_INGEST, body)
    return body


def announcement(inst: StreamingRig, run: int | None, sequence: int) -> m.StfAvailable:
    """A real STF file written by the DAQ into its buffer (announced normally too)."""
    stf = inst.daq.write_stf(run, sequence, datetime.now(UTC))
    return m.StfAvailable(stf=stf, rse=inst.config.daq_rse,
                          path=str(inst.daq.buffer_dir / stf.filename))


def test_forged_announcements_are_refused_and_the_run_completes(inst, tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    inst.daq.bring_up()
    stream = announcement(inst, None, 0)  # an STF of the always-on stream, outside runs
    inst.daq.run_imminent(RUN)
    inst.daq.start_run(RUN)
    real = announcement(inst, RUN, 0)
    forged = []
    # 1: an out-of-run STF named by an absolute path or ../.. (was archived to that path)
    for name in (str(outside / "pwned.stf"), "../../../../outside/pwned.stf",
                 f"{stream.stf.filename}/../../../../outside/pwned.stf"):
        forged.append(forge(inst, stream, filename=name, sequence=7))
    # 2: a path outside the DAQ buffer, with matching size and checksum (was registered and
    # copied to both tapes); directly, through ../, through a symbolic link in the buffer
    copy = outside / naming.stf_filename(RUN, 1)
    shutil.copyfile(real.path, copy)
    link = inst.daq.buffer_dir / "innocent.stf"
    os.symlink(copy, link)
    sneaky = f"{inst.daq.buffer_dir}/../../../outside/{copy.name}"
    for path in (str(copy), sneaky, str(link)):
        forged.append(forge(inst, real, path=path, filename=copy.name, sequence=1))
    forged.append(forge(inst, real, rse="BNL_TAPE"))  # announced on another RSE
    # 6: an STF far ahead: one issue for the whole gap (was one row per missing sequence)
    ahead = inst.daq.write_stf(RUN, 8000, datetime.now(UTC), hold=True)
    inst.daq._outbox.clear()  # written, never announced by the DAQ: only the attacker does
    far = forge(inst, m.StfAvailable(stf=ahead, rse=real.rse,
                                     path=str(inst.daq.buffer_dir / ahead.filename)))
    for sequence in (1, 2):
        inst.daq.write_stf(RUN, sequence, datetime.now(UTC))
    inst.daq.end_run(RUN, 3)
    # every STF arrived, but the forgeries naming run 151 stay unresolved dead letters of it:
    # the run ends incomplete and says where to look (nothing is silently dropped)
    assert inst.orchestrator.wait_run_ended(RUN, TIMEOUT) == "incomplete"
    assert any("dead-lettered: epic-wfms deadletters list --run 151" in reason
               for reason in shortfall(inst.db, RUN))

    letters = {letter.body: letter.reason for letter in dead_letters(inst.db)}
    assert set(forged) <= set(letters), [r for b, r in letters.items() if b not in forged]
    for body in forged[:3]:
        assert "filename" in letters[body] and "not a valid file name" in letters[body]
    for body in forged[3:6]:
        assert "refused" in letters[body] and "outside" in letters[body]
    assert "announced on RSE 'BNL_TAPE'" in letters[forged[6]]
    assert not list(outside.glob("pwned*")) and not (tmp_path / "pwned.stf").exists()
    assert sorted(p.name for p in outside.iterdir()) == [copy.name]  # only our own copy
    with inst.db.session() as session:
        gaps = list(session.scalars(select(IntegrityIssueRecord).where(
            IntegrityIssueRecord.kind == "sequence_gap")))
        far_stf = session.scalar(select(StfRecord).where(StfRecord.sequence == 8000))
    assert far not in letters  # a well-formed announcement: screened, one issue for the gap
    assert len(gaps) == 1 and "sequences 3..7999 of run 151" in gaps[0].detail
    assert "(7997 missing)" in gaps[0].detail and far_stf.archive_status == "archived"
    produced = [naming.stf_filename(RUN, s) for s in range(3)]
    report = run_report(inst.db, inst.ddm, RUN, produced)
    assert report["lost"] == 0
    for record in inst.ddm.list_replicas(naming_did(real.stf.filename)):
        assert Path(record.path).resolve().is_relative_to(inst.config.data_dir.resolve())


def naming_did(name: str):
    from epic_wfms.ddm import DID
    return DID(naming.SCOPE, name)


def test_late_stfs_shrink_and_resolve_their_gap(inst):
    inst.daq.bring_up()
    inst.daq.run_imminent(RUN)
    inst.daq.start_run(RUN)
    for sequence in (0, 5, 1, 3, 2, 4):  # 1..4 missing when 5 arrives, then late, in any order
        inst.daq.write_stf(RUN, sequence, datetime.now(UTC))
        if sequence == 5:
            assert wait_for(lambda: len(gaps(inst)) == 1)
            assert "sequences 1..4" in gaps(inst)[0].detail
    inst.daq.end_run(RUN, 6)
    assert inst.orchestrator.wait_run_finished(RUN, TIMEOUT)
    rows = gaps(inst)
    assert len(rows) == 2 and all(g.resolved_at is not None for g in rows)  # one split (3)


def gaps(inst):
    with inst.db.session() as session:
        return list(session.scalars(select(IntegrityIssueRecord).where(
            IntegrityIssueRecord.kind == "sequence_gap").order_by(IntegrityIssueRecord.id)))


# -- 5: a poison message in a batch, both transports --------------------------------------------
POISON = [
    "[" * 100_000 + "]" * 100_000,                       # RecursionError in json.loads
    '{"a": ' * 30 + "1" + "}" * 30,                      # parses, but nests beyond the limit
    '{"msg_id": "\\u0000' + "x" * 20 + '"}',             # NUL: PostgreSQL cannot store it
    '{"msg_id": "raw\x00nul"}',                          # ... nor a raw one in the body
    '{"msg_id": "\\ud800xxxxxxxx"}',                     # unpaired surrogate
    '{"n": ' + "9" * 5000 + "}",                         # integer beyond Python's digit limit
    '{"x": NaN}',
    "x" * (screening.MAX_BODY_CHARS + 1),                # beyond the size limit
]


def valid_bodies(n: int) -> list[str]:
    factory = MessageFactory("test")
    return [encode(factory.make("start_run", m.RunBoundary(run_number=i + 1), run_number=i + 1))
            for i in range(n)]


@pytest.fixture(params=["inprocess", "stomp"])
def transport_kind(request):
    return request.param


def make_transport(kind: str, namespace: str):
    if kind == "inprocess":
        return InProcessTransport()
    return StompTransport(StompSettings(namespace=namespace, client_id=f"poison-{namespace}",
                                        queue_expiry_s=60))


def test_a_poison_message_is_dead_lettered_alone_and_its_batch_handled(transport_kind):
    with private_postgres_schema() as url:
        db = Database(url)
        db.create_schema()
        namespace = f"poison-{uuid.uuid4().hex[:8]}"
        transport = make_transport(transport_kind, namespace)
        bus = MessageBus(transport, StoreLedger(db), retry_backoff_s=0.001)
        try:
            good = valid_bodies(4)
            mixed = [good[0], *POISON[:3], good[1], *POISON[3:], good[2], good[3]]
            handled: queue.Queue[str] = queue.Queue()
            for body in mixed:  # queued before anyone consumes: they arrive as one batch
                bus.publish_raw("/queue/poison", body)
            bus.subscribe_batch("/queue/poison", "poisoned",
                                lambda batch: [handled.put(msg.msg_id) for msg in batch],
                                max_batch=64)
            ids = {handled.get(timeout=30) for _ in good}
            assert ids == {decode(body).msg_id for body in good}
            assert wait_for(lambda: len(dead_letters(db)) == len(POISON), 30)
            letters = dead_letters(db)
            assert {letter.subscription for letter in letters} == {"poisoned"}
            reasons = " ".join(letter.reason for letter in letters)
            assert "nests too deeply" in reasons and "NUL character" in reasons
            assert any("raw\\x00nul" in letter.body for letter in letters)  # kept, storable
            if transport_kind == "stomp":  # everything was acknowledged: nothing comes again
                bus.unsubscribe("/queue/poison", "poisoned")
                sentinel = valid_bodies(5)[4]
                bus.publish_raw("/queue/poison", sentinel)
                again: queue.Queue[str] = queue.Queue()
                bus.subscribe_batch("/queue/poison", "after",
                                    lambda batch: [again.put(msg.msg_id) for msg in batch])
                assert again.get(timeout=30) == decode(sentinel).msg_id
                assert again.empty() and len(dead_letters(db)) == len(POISON)
        finally:
            bus.close()
            db.dispose()


# -- the bus's decoding, fuzzed -------------------------------------------------------------------
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                    | st.text(max_size=20),
                    lambda children: st.lists(children, max_size=4)
                    | st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=30)


def _mutated(template: dict, path: list[str], value: object) -> str:
    data = json.loads(json.dumps(template))
    target = data
    for key in path[:-1]:
        target = target.setdefault(key, {}) if isinstance(target, dict) else target
    if isinstance(target, dict):
        target[path[-1]] = value
    return json.dumps(data)


STF_TEMPLATE = json.loads(encode(MessageFactory("daq").make(
    "stf_available", m.StfAvailable(stf=m.SuperTimeFrame(
        run_number=5, sequence=1, filename=naming.stf_filename(5, 1),
        first_tf_time=datetime(2026, 1, 1, tzinfo=UTC), last_tf_time=datetime(2026, 1, 1,
                                                                               tzinfo=UTC),
        tf_count=1, size_bytes=1, adler32="00000001", state="run", substate="physics"),
        rse="DAQ_BUFFER", path="/x"), run_number=5)))
FIELDS = st.sampled_from([
    ["msg_id"], ["msg_type"], ["producer"], ["seq"], ["created_at"], ["schema_version"],
    ["payload", "rse"], ["payload", "path"], ["payload", "stf", "filename"],
    ["payload", "stf", "run_number"], ["payload", "stf", "sequence"],
    ["payload", "stf", "daq_metadata"], ["payload", "stf", "adler32"], ["payload", "stf"]])


@given(st.one_of(st.text(max_size=200), st.binary(max_size=200), JSON.map(json.dumps),
                 st.builds(_mutated, st.just(STF_TEMPLATE), FIELDS, JSON)))
@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_decoding_any_body_gives_a_message_or_a_malformed_error(body):
    try:
        message = decode(body)
    except MalformedMessageError as error:
        assert error.what and error.fix
        return
    assert encode(message)  # what decodes can be handled and re-encoded
    if message.msg_type == "stf_available":
        naming.check_file_name(message.body.stf.filename)


@given(st.lists(st.one_of(st.text(max_size=60), JSON.map(json.dumps),
                          st.sampled_from(POISON[:6])), max_size=6),
       st.integers(min_value=0, max_value=4))
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_any_batch_is_handled_or_dead_lettered_message_by_message(tmp_path_factory, junk, n):
    db = Database(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'store.sqlite'}")
    db.create_schema()
    bus = MessageBus(InProcessTransport(), StoreLedger(db), retry_backoff_s=0.001)
    try:
        good = valid_bodies(n)
        handled: list[str] = []
        for body in [*junk, *good]:
            bus.publish_raw("/queue/fuzz", body)
        bus.subscribe_batch("/queue/fuzz", "fuzz",
                            lambda batch: handled.extend(msg.msg_id for msg in batch))
        assert bus.wait_idle(30)
        assert sorted(handled) == sorted(decode(b).msg_id for b in good)
        assert len(dead_letters(db)) == len(junk)
    finally:
        bus.close()
        db.dispose()
