"""The README's first command, `epic-wfms demo`, and `epic-wfms status`, as a user runs them."""

import json
import subprocess
import sys


def epic_wfms(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "epic_wfms.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300, check=False)


def test_demo_json_then_status(tmp_path):
    result = epic_wfms("demo", "--stfs", "12", "--rate", "50", "--json",
                       "--data-dir", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for key in ("stfs_produced", "stfs_registered", "stfs_archived", "stfs_processed",
                "stfs_merged"):
        assert report[key] == 12, key
    assert report["lost"] == 0
    assert 0 <= report["latency_s"]["p50"] <= report["latency_s"]["p99"]
    # the fast path ran alongside: 12 TF samples -> 12 express + 24 slices, all done once
    assert report["slices"] == {"total": 36, "done": 36, "failed": 0, "retried": 0, "open": 0}
    assert 0 < report["slice_latency_s"]["p50"] <= report["slice_latency_s"]["p99"]
    status = epic_wfms("status", "--json", "--data-dir", str(tmp_path), cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    assert info["runs"][0]["run"] == report["run_number"]
    assert info["runs"][0]["status"] == "finished" and info["runs"][0]["stfs"] == 12
    assert info["detector_state"] == "off/not_ready"  # the demo ends the fill
    assert info["jobs"]["reco.finished"] == 12
    again = epic_wfms("demo", "--stfs", "4", "--rate", "50", "--json",
                      "--data-dir", str(tmp_path), cwd=tmp_path)
    second = json.loads(again.stdout)
    assert second["run_number"] == report["run_number"] + 1 and second["lost"] == 0
    assert second["integrity_issues"] == {}  # the store's detector state carried over cleanly


def test_demo_rejects_bad_standby_range(tmp_path):
    result = epic_wfms("demo", "--standby", "9:3", "--data-dir", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2 and "need 0 <= FROM < TO" in result.stderr


def test_statemachine_table_lists_every_trigger(tmp_path):
    result = epic_wfms("statemachine", cwd=tmp_path)
    assert result.returncode == 0
    for trigger in ("start_run", "good_for_physics_dropped", "end_calib", "set_flavour"):
        assert f"`{trigger}`" in result.stdout


def test_deadletters_list_show_discard(tmp_path):
    """A dead letter is listed under the run its body names, shown with its body, and
    resolved with who and why; replay needs the STOMP bus (the consumers live elsewhere)."""
    from click.testing import CliRunner

    from epic_wfms.cli.main import cli
    from epic_wfms.config import load_config
    from epic_wfms.installation import open_database
    from epic_wfms.store.ledger import StoreLedger

    db = open_database(load_config(data_dir=tmp_path))
    body = json.dumps({"msg_type": "stf_gen", "run_id": "100010", "namespace": "alice"})
    StoreLedger(db).dead_letter("testbed-bridge", "/topic/epictopic", body,
                                "testbed stf_gen message lacks filename, timestamp")
    db.dispose()

    def run(*args: str):
        return CliRunner().invoke(cli, [*args, "--data-dir", str(tmp_path)])

    (letter,) = json.loads(run("deadletters", "list", "--run", "100010", "--json").output)
    assert (letter["run_number"], letter["msg_type"]) == (100010, "stf_gen")
    shown = run("deadletters", "show", str(letter["id"]), "--body-only")
    assert json.loads(shown.output) == json.loads(body)
    replayed = run("deadletters", "replay", str(letter["id"]))
    assert replayed.exit_code == 1 and "needs bus.transport: stomp" in replayed.output
    discarded = run("deadletters", "discard", "--run", "100010", "--reason", "a test")
    assert discarded.exit_code == 0, discarded.output
    (resolved,) = json.loads(run("deadletters", "list", "--all", "--json").output)
    assert resolved["resolution"].endswith(": a test") and resolved["resolved_at"]
    status = json.loads(run("status", "--json").output)
    assert status["open_dead_letters"] == {"total": 0, "without_run": 0}
