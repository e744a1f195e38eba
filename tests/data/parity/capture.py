"""Regenerate the canned fact events in this folder from a real run.

    .venv/bin/python tests/data/parity/capture.py                      # localhost -> localhost-events.json
    .venv/bin/python tests/data/parity/capture.py INVENTORY OUT.json   # e.g. a lab VM booted with systemd

Runs provisioner/data/parity_facts.yml through ansible-runner against ``localhost`` (local connection) and
keeps, for every task result event, only what devbox reads (event name, host, task, action, res).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import ansible_runner

HERE = Path(__file__).resolve().parent
PLAYBOOK = HERE.parents[2] / "provisioner" / "data" / "parity_facts.yml"
# setup facts devbox reads, plus a few that identify the platform; the rest (addresses, host keys, machine
# ids, serial numbers) say nothing parity needs and describe the machine the capture ran on
SETUP_FACTS = {"ansible_distribution", "ansible_distribution_major_version", "ansible_distribution_release",
               "ansible_distribution_version", "ansible_kernel", "ansible_kernel_version", "ansible_python",
               "ansible_python_version", "ansible_os_family", "ansible_pkg_mgr", "ansible_service_mgr",
               "ansible_architecture", "ansible_system", "ansible_local", "discovered_interpreter_python",
               "gather_subset", "module_setup"}
KEEP = {"runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable"}


def _keep(event: dict) -> dict:
    data = {k: event["event_data"].get(k) for k in ("host", "task", "task_action", "res")}
    res = data["res"] or {}
    if data["task_action"] == "gather_facts":
        res["ansible_facts"] = {k: v for k, v in res.get("ansible_facts", {}).items() if k in SETUP_FACTS}
    res.pop("invocation", None)
    return {"event": event["event"], "event_data": data}


LOCALHOST = "localhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3"


def main(argv: list[str]) -> int:
    inventory, out = (argv[0], Path(argv[1])) if len(argv) == 2 else (LOCALHOST, HERE / "localhost-events.json")
    # the venv's ansible-playbook first on PATH, as devbox itself runs it
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    with tempfile.TemporaryDirectory() as tmp:
        result = ansible_runner.run(
            private_data_dir=tmp, playbook=str(PLAYBOOK), inventory=inventory,
            extravars={"parity_users": ["root", "nobody", "no-such-user"],
                       "parity_groups": ["root", "adm", "no-such-group"]},
            quiet=True)
        events = [_keep(e) for e in result.events if e.get("event") in KEEP]
    out.write_text(json.dumps(events, indent=1, sort_keys=True) + "\n")
    print(f"status={result.status} rc={result.rc} events={len(events)}")
    return 0 if result.rc == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
