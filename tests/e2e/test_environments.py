"""Environments on real VMs, through the real CLI: a development VM next to a "staging" VM at a fixed lab address
with its own inventory and vault.

- development: init + up with the production vault files present and no password anywhere; the VM gets the
  generated value; no canary in any file devbox wrote;
- staging: refused before trust; `devbox trust`; a check-mode diff and a wrong typed name apply nothing;
  `--yes --env staging` applies (the staging vault decrypts with the prompted password); `status --env staging`
  reads the revision back; a target that is a production host is refused; a changed host key is refused.
`devbox integration` runs on the reference service itself: test_reference_service.py.
"""
from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest
import yaml

from helpers import git

pytestmark = pytest.mark.lab

ENVS = Path(__file__).resolve().parents[1] / "data" / "envs"
STAGING_IP = "192.168.56.201"  # outside devbox's VM addresses (.11 upwards), on the lab's private network
STAGING_PASSWORD = (ENVS / "staging-vault-password.txt").read_text().strip()
CANARIES = ("CANARY-PROD-7f3e9c1d", "CANARY-PROD-TOKEN-91ac55e2", "CANARY-PROD-INLINE-5d2c0e77",
            "CANARY-STAGING-4b8a2e60", STAGING_PASSWORD, (ENVS / "production-vault-password.txt").read_text().strip())


def devbox_written_files(root: Path) -> list[Path]:
    files = [p for p in (root / ".devbox").rglob("*") if p.is_file() and not p.is_symlink()]
    files += [p for p in (root / "environments").glob("*") if p.is_file()] if (root / "environments").exists() else []
    return files + [root / "Vagrantfile"]


def leaks(root: Path) -> list[tuple[str, str]]:
    return [(c, str(p)) for p in devbox_written_files(root) for c in CANARIES if c.encode() in p.read_bytes()]


def write_staging_inventory(project, key_file: str, extra_hosts: dict | None = None) -> None:
    staging = project.path / "inventories" / "staging"
    (staging / "group_vars" / "all").mkdir(parents=True, exist_ok=True)
    (staging / "group_vars" / "all" / "vault.yml").write_bytes(
        (ENVS / "staging" / "group_vars" / "all" / "vault.yml").read_bytes())
    (staging / "group_vars" / "all" / "main.yml").write_text('db_password: "{{ vault_db_password }}"\n')
    hosts = {"stg-web-1": {"ansible_host": STAGING_IP, "ansible_user": "vagrant",
                           "ansible_ssh_private_key_file": key_file}}
    hosts.update(extra_hosts or {})
    (staging / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"web": {"hosts": hosts}}}}))


def test_development_and_staging_with_every_safety_rail(devbox_project, vagrant_project, timings):
    p = devbox_project
    for name in ("devbox.yml", "playbooks"):
        p.copy_in(ENVS / "e2e" / name)
    (p.path / "inventories").mkdir()
    p.copy_in(ENVS / "production", "inventories/production")

    vagrant_project.define_reference_vm("stg-web-1", STAGING_IP)
    booted: dict = {}

    def boot_staging():
        try:  # a loaded CI machine emulating several VMs can take long: say so instead of a KeyError
            booted["result"] = vagrant_project.vagrant("up", "--no-provision", check=False, timeout=2400)
        except Exception as exc:
            booted["error"] = exc

    staging_boot = threading.Thread(target=boot_staging)
    with timings.measure("staging VM boot while dev init"):
        staging_boot.start()
        init = p.devbox("init")
        # not two `vagrant up` at once: both would create libvirt's management network ("not active" errors)
        staging_boot.join()
    assert "error" not in booted, f"the staging VM did not boot: {booted.get('error')}"
    assert booted["result"].returncode == 0, booted["result"].stdout[-2000:] + booted["result"].stderr[-2000:]
    with timings.measure("dev up (1 VM)"):
        up = p.devbox("up")
    assert "vault_db_password" in init.stdout and "web-1" in up.stdout

    # development: the generated value reached the VM, and no real secret reached any file devbox wrote
    dev_value = yaml.safe_load((p.path / ".devbox" / "secrets.yml").read_text())["vault_db_password"]
    on_vm = p.devbox("ssh", "web-1", "-c", "sudo cat /root/db_password").stdout
    assert on_vm.strip() == dev_value
    stamp = json.loads(p.devbox("ssh", "web-1", "-c", "cat /etc/devbox/applied.json").stdout)
    assert stamp["environment"] == "dev"
    dev_status = json.loads(p.devbox("status", "--env", "dev", "--json").stdout)
    assert [h["host"] for h in dev_status["hosts"]] == ["web-1"] and dev_status["hosts"][0]["applied"]
    assert leaks(p.path) == []

    key_file = re.search(r"IdentityFile\s+(\S+)", vagrant_project.vagrant("ssh-config").stdout).group(1).strip('"')
    write_staging_inventory(p, key_file)

    # staging before trust: stopped before any task
    untrusted = p.devbox("provision", "--env", "staging", "--yes", check=False, input=f"{STAGING_PASSWORD}\n")
    assert untrusted.returncode == 1 and "not trusted; nothing was run" in untrusted.stderr

    trust = p.devbox("trust", "--env", "staging", input="y\n")
    assert "SHA256:" in trust.stdout and (p.path / "environments" / "staging.known_hosts").exists()

    # check-mode diff, then a wrong name: nothing applied
    with timings.measure("staging: check mode + refused confirmation"):
        refused = p.devbox("provision", "--env", "staging", check=False, input=f"{STAGING_PASSWORD}\nstagin\n")
    assert refused.returncode == 1 and "nothing was applied" in refused.stderr, refused.stderr[-2000:]
    assert "would change: stg-web-1: release file" in refused.stderr
    assert "+release for stg-web-1" in refused.stderr  # the diff itself
    absent = vagrant_project.ssh("stg-web-1", "test -e /opt/devbox-e2e/release.txt", check=False)
    assert absent.returncode == 1

    # the team's playbooks are a git checkout (main): the stamp records the commit, `devbox report` counts from it
    p.commit("devbox.yml", "playbooks", "inventories", message="the team's playbooks")
    git(p.path, "branch", "-M", "main")
    head = git(p.path, "rev-parse", "HEAD").strip()

    # --yes with --env on the command line applies without the typed name
    with timings.measure("staging: check mode + apply with --yes"):
        applied = p.devbox("provision", "--env", "staging", "--yes", input=f"{STAGING_PASSWORD}\n")
    assert "revision recorded on 1 hosts" in applied.stdout
    assert vagrant_project.ssh("stg-web-1", "sudo cat /root/db_password").stdout.strip() == "CANARY-STAGING-4b8a2e60"
    status = json.loads(p.devbox("status", "--env", "staging", "--json", input=f"{STAGING_PASSWORD}\n").stdout)
    assert status["hosts"][0]["host"] == "stg-web-1" and status["hosts"][0]["applied"]["environment"] == "staging"

    # `devbox report`: the commit each staging host runs, read back with pinned keys and no vault password
    page, data = p.path / "report" / "report.html", p.path / "report" / "report.json"
    page.parent.mkdir()
    with timings.measure("devbox report --env staging"):
        p.devbox("report", "--env", "staging", "--html", str(page), "--json", str(data))
    (env,) = json.loads(data.read_text())["environments"]
    assert env["ok"] and {h["host"]: (h["commit"], h["behind"], h["run"]) for h in env["hosts"]} == {
        "stg-web-1": (head, 0, "full")}, env
    html = page.read_text()
    assert 'data-host="stg-web-1"' in html and head[:12] in html and '<svg id="topology"' in html

    # a staging inventory that points at a production host is refused
    write_staging_inventory(p, key_file, {"stg-web-2": {"ansible_host": "10.20.0.11"}})
    leaky = p.devbox("provision", "--env", "staging", "--yes", check=False)
    assert leaky.returncode == 1 and "stg-web-2 (10.20.0.11:22) reaches production host web1" in leaky.stderr
    assert "nothing was run" in leaky.stderr
    write_staging_inventory(p, key_file)

    # the host is rebuilt with new keys: refused before any task
    vagrant_project.ssh("stg-web-1", "sudo rm -f /etc/ssh/ssh_host_* && sudo ssh-keygen -A -q && "
                                     "sudo systemctl restart ssh")
    changed = p.devbox("provision", "--env", "staging", "--yes", check=False, input=f"{STAGING_PASSWORD}\n")
    assert changed.returncode == 1 and "changed" in changed.stderr and "nothing was run" in changed.stderr

    # nothing devbox wrote holds a canary or a vault password: not the runner artifacts of the staging runs either
    assert leaks(p.path) == []

