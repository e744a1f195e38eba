from __future__ import annotations

import json

import pytest

from provisioner.errors import DevboxError
from provisioner.project.state import MachineRecord, State, load_state, save_state


def test_missing_file_is_empty_state(tmp_path):
    assert load_state(tmp_path / "state.json") == State()


def test_roundtrip_keeps_other_features_keys(tmp_path):
    path = tmp_path / ".devbox" / "state.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"version": 1, "machines": {}, "ledger": {"web-1": {"role": "abc"}}}))
    state = load_state(path)
    state.machine("web-1").ssh = {"host": "10.0.0.2", "port": 22, "user": "vagrant", "identity_file": "/k"}
    state.record_seen("web-1", "running")
    save_state(path, state)
    data = json.loads(path.read_text())
    assert data["ledger"] == {"web-1": {"role": "abc"}}
    again = load_state(path)
    assert again.machines["web-1"].provider_state == "running"
    assert again.machines["web-1"].ssh["host"] == "10.0.0.2"
    assert not list(path.parent.glob(".state.json.*"))  # no temp file left behind


def test_not_created_drops_cached_connection(tmp_path):
    state = State()
    state.machine("db-1").ssh = {"host": "x"}
    state.record_seen("db-1", "not_created")
    assert state.machines["db-1"].ssh is None and state.machines["db-1"].seen_at


def test_forget_removes_everything_about_a_machine():
    state = State(machines={"a": MachineRecord(provider_state="running", revision="abc")})
    state.forget("a")
    state.forget("never-there")
    assert state.machines == {}


def test_unknown_record_fields_are_ignored(tmp_path):
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"machines": {"a": {"provider_state": "running", "future_field": 1}}}))
    assert load_state(path).machines["a"] == MachineRecord(provider_state="running")


@pytest.mark.parametrize("content", ["{not json", "[]", '{"machines": []}'])
def test_damaged_file_names_path_and_fix(tmp_path, content):
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(DevboxError) as err:
        load_state(path)
    assert str(path) in str(err.value) and "delete" in err.value.hint
