import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from epic_wfms.errors import InvalidRecordError
from epic_wfms.model import Run, SuperTimeFrame, TFSample, naming, parse_record
from epic_wfms.model.checksum import file_adler32, from_testbed_checksum, to_testbed_checksum
from epic_wfms.model.stf_file import read_stf, write_stf, write_tf_sample

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def stf_record(**changes):
    record = {
        "run_number": 123, "sequence": 42, "filename": "swf.000123.000042.stf",
        "first_tf_time": T0.isoformat(), "last_tf_time": (T0 + timedelta(seconds=0.6)).isoformat(),
        "tf_count": 900, "size_bytes": 2_000_000_000, "adler32": "ad:0a1b2c3d",
        "state": "run", "substate": "physics", "daq_metadata": {"flavour": "epic"},
    }
    record.update(changes)
    return record


def test_valid_stf_normalises_testbed_checksum():
    stf = parse_record(SuperTimeFrame, stf_record())
    assert stf.adler32 == "0a1b2c3d"
    assert to_testbed_checksum(stf.adler32) == "ad:0a1b2c3d"


@pytest.mark.parametrize(
    ("changes", "field", "hint"),
    [
        ({"adler32": "xyz"}, "adler32", "8 hex digits"),
        ({"filename": "swf.000123.000043.stf"}, "<record>", "swf.000123.000042.stf"),
        ({"tf_count": 0}, "tf_count", "greater than 0"),
        ({"state": "running"}, "state", "'off', 'no_beam'"),
        ({"last_tf_time": T0.replace(year=2025).isoformat()}, "<record>", "before"),
        ({"unexpected": 1}, "unexpected", "Extra inputs"),
        ({"first_tf_time": "2026-11-25T12:00:00"}, "first_tf_time", "timezone"),
    ],
)
def test_malformed_stf_gets_clear_error(changes, field, hint):
    with pytest.raises(InvalidRecordError) as info:
        parse_record(SuperTimeFrame, stf_record(**changes))
    message = str(info.value)
    assert "invalid SuperTimeFrame record" in message
    assert field in message and hint in message
    assert "fix:" in message


def test_run_end_before_start_refused():
    with pytest.raises(InvalidRecordError, match="before start_time"):
        parse_record(Run, {"number": 5, "start_time": T0, "end_time": T0 - timedelta(1),
                           "detector_config": "x"})
    run = parse_record(Run, {"number": 5, "run_type": "cosmics", "start_time": T0,
                             "detector_config": "epic-v1"})
    assert run.run_type == "cosmics"
    with pytest.raises(InvalidRecordError, match="run_type"):
        parse_record(Run, {"number": 5, "run_type": "party", "start_time": T0,
                           "detector_config": "x"})


def test_tf_sample_validation():
    with pytest.raises(InvalidRecordError, match="tf_count"):
        parse_record(TFSample, {"stf_filename": "a.stf", "index": 0, "filename": "a_tf_000.tf",
                                "first_tf": 0, "tf_count": 0, "size_bytes": 5,
                                "adler32": "00000001"})


def test_naming_round_trip_and_errors():
    name = naming.stf_filename(123, 42)
    assert name == "swf.000123.000042.stf"
    assert naming.parse_stf_filename(name) == (123, 42)
    assert naming.tf_sample_filename(name, 3) == "swf.000123.000042_tf_003.tf"
    assert naming.testbed_run_dataset(123) == "group.daq:swf.123.run"
    reco = naming.reco_output_filename(name)
    assert naming.attempt_filename(reco, 1) == "swf.000123.000042.reco.json"
    assert naming.attempt_filename(reco, 3) == "swf.000123.000042.reco.a3.json"
    with pytest.raises(ValueError, match=re.escape("swf.<run:06d>.<seq:06d>.stf")):
        naming.parse_stf_filename("swf.20250101.120000.run.physics.stf")


def test_checksum_matches_zlib_and_rejects_garbage(tmp_path: Path):
    path = tmp_path / "f"
    path.write_bytes(b"ePIC")
    # by hand: A = 1+101+80+73+67 = 322 = 0x142, B = 102+182+255+322 = 861 = 0x35d
    assert file_adler32(path) == "035d0142"
    assert from_testbed_checksum("AD:035D0142".lower()) == "035d0142"
    with pytest.raises(ValueError, match="adler32"):
        from_testbed_checksum("md5:abc")


def test_stf_file_round_trip_sample_and_truncation(tmp_path: Path):
    import random

    path = tmp_path / "swf.000001.000000.stf"
    write_stf(path, {"run_number": 1, "sequence": 0}, 12, 30, random.Random(3))
    header, tfs = read_stf(path)
    assert header["tf_count"] == 12 and len(tfs) == 12
    assert [tf.index for tf in tfs] == list(range(12))
    sample = tmp_path / "s.tf"
    assert write_tf_sample(path, sample, 2, 3, {}) == 3
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated"):
        read_stf(path)
