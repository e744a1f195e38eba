"""bench/speed_bench.py without VMs: the project it generates (planned by devbox's own code, the playbook applied
twice by the real ansible-playbook to a folder), the Vagrantfile with provisioner blocks (the real `vagrant
validate`), the vagrant shim run for real, and the parsers on the real formats of squid's access.log and
ansible-playbook's recap."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.config.schema import load_config
from provisioner.plan.inventory import load_inventory
from provisioner.plan.render import DEFAULT_TEMPLATE, render_vagrantfile
from provisioner.plan.topology import derive_topology

from helpers import load_bench

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


sb = load_bench("speed_bench")


def project(tmp_path: Path, n: int) -> tuple[Path, object]:
    root = tmp_path / f"p{n}"
    sb.write_project(root, n, box="devbox/debian12", memory=384)
    config = load_config(root / "devbox.yml", required=True)
    topology = derive_topology(load_inventory(config.inventory_path()), config)
    return root, (topology, config)


# --- the generated project --------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_one_vm_per_role_group(tmp_path, n):
    _root, (topology, _config) = project(tmp_path, n)
    assert [m.name for m in topology.machines] == [f"{g}-1" for g in sb.ROLE_GROUPS[:n]]
    assert all(m.memory == 384 and m.cpus == 1 for m in topology.machines)
    assert all(len(m.represents) == 2 for m in topology.machines)  # production has two hosts per role


def test_sizes_outside_the_role_list_are_refused():
    with pytest.raises(ValueError):
        sb.production_inventory(len(sb.ROLE_GROUPS) + 1)


@pytest.mark.ansible
def test_the_playbook_applies_and_then_changes_nothing(tmp_path):
    """The real ansible-playbook, local connection, every path under a folder; the network step (packages) and
    the accounts are skipped. The second run must report changed=0: the bench compares runs on converged VMs."""
    root = tmp_path / "p"
    sb.write_project(root, 2, box="devbox/debian12", memory=384)
    target = tmp_path / "target"
    for sub in ("etc/apt/apt.conf.d", "usr/local/bin"):
        (target / sub).mkdir(parents=True)
    argv = [str(BIN / "ansible-playbook"), "-i", "web-1,", "-c", "local", str(root / "playbooks" / "site.yml"),
            "--skip-tags", "packages,accounts",
            "-e", f"bench_root={target} ansible_become=false apt_proxy=http://127.0.0.1:9 "
                  f"ansible_python_interpreter={sys.executable}"]
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "0",
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    recaps = []
    for _ in range(2):
        run = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        recaps.append(sb.parse_recap(run.stdout)["web-1"])
    assert recaps[0]["changed"] == 10 and recaps[0]["failed"] == 0, recaps
    assert recaps[1] == {"ok": 10, "changed": 0, "unreachable": 0, "failed": 0}, recaps
    assert (target / "etc" / "apt" / "apt.conf.d" / "01proxy").read_text() == \
        'Acquire::http::Proxy "http://127.0.0.1:9";'
    assert "name = web-1" in (target / "opt" / "bench" / "app.conf").read_text()
    assert os.readlink(target / "usr" / "local" / "bin" / "bench-run") == str(target / "opt" / "bench" / "run.sh")


# --- Vagrant's per-machine provisioner ---------------------------------------------------------------------

def test_provisioner_blocks_go_into_every_define_block_of_the_rendered_vagrantfile(tmp_path):
    _root, (topology, config) = project(tmp_path, 4)
    original = render_vagrantfile(topology, config, DEFAULT_TEMPLATE)
    text = sb.vagrantfile_with_provisioners(original, playbook="playbooks/site.yml", inventory=".devbox/inventory")
    assert text.count('.vm.provision "ansible" do |ansible|') == 4
    assert text.count("ansible.playbook = 'playbooks/site.yml'") == 4
    assert text.count("ansible.inventory_path = '.devbox/inventory'") == 4
    blocks = re.findall(r"  config\.vm\.define '([^']+)' do \|node\|\n    node\.vm\.provision \"ansible\"", text)
    assert blocks == [m.name for m in topology.machines]   # first thing inside each machine's block
    # only lines were added: removing the blocks gives the original back
    stripped = re.sub(r'    node\.vm\.provision "ansible" do \|ansible\|\n(      ansible\..*\n)+    end\n', "", text)
    assert stripped == original


def test_a_vagrantfile_without_define_blocks_is_refused():
    with pytest.raises(sb.BenchError):
        sb.vagrantfile_with_provisioners('Vagrant.configure("2") do |config|\nend\n', playbook="p.yml",
                                         inventory="i")


@pytest.mark.vagrant
def test_vagrant_validate_accepts_the_vagrantfile_with_provisioners(tmp_path):
    if shutil.which("vagrant") is None:
        pytest.fail("vagrant is required for the vagrant tier (scripts/setup installs it)")
    root, (topology, config) = project(tmp_path, 2)
    (root / "Vagrantfile").write_text(render_vagrantfile(topology, config, DEFAULT_TEMPLATE))
    (root / ".devbox" / "inventory").mkdir(parents=True)   # Vagrant checks that the inventory exists
    (root / sb.ALT_VAGRANTFILE).write_text(sb.vagrantfile_with_provisioners(
        (root / "Vagrantfile").read_text(), playbook="playbooks/site.yml", inventory=".devbox/inventory"))
    env = {**os.environ, "VAGRANT_VAGRANTFILE": sb.ALT_VAGRANTFILE, "VAGRANT_CHECKPOINT_DISABLE": "1"}
    result = subprocess.run(["vagrant", "validate"], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    # and the check is real: Vagrant read the provisioner blocks of that file (the Vagrantfile itself is unchanged)
    good = (root / sb.ALT_VAGRANTFILE).read_text()
    (root / sb.ALT_VAGRANTFILE).write_text(good.replace("ansible.inventory_path", "ansible.no_such_option = 1\n"
                                                        "      ansible.inventory_path", 1))
    bad = subprocess.run(["vagrant", "validate"], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "no_such_option" in bad.stdout + bad.stderr


# --- the vagrant shim ----------------------------------------------------------------------------------------

def test_the_shim_records_each_call_and_passes_arguments_output_and_exit_code(tmp_path):
    real = tmp_path / "real-vagrant"
    real.write_text('#!/bin/sh\nfor a in "$@"; do echo "arg:$a"; done\nexit 3\n')
    real.chmod(0o755)
    log = tmp_path / "calls.tsv"
    shim = tmp_path / "vagrant"
    shim.write_text(sb.shim_script(str(real), log))
    shim.chmod(0o755)
    run = subprocess.run([str(shim), "up", "--no-provision", "web 1\tx"], capture_output=True, text=True)
    assert run.returncode == 3
    assert run.stdout.splitlines() == ["arg:up", "arg:--no-provision", "arg:web 1\tx"]
    subprocess.run([str(shim), "status"], capture_output=True)
    calls = sb.parse_shim_log(log.read_text())
    assert [c.argv for c in calls] == [["up", "--no-provision", "web 1 x"], ["status"]]
    assert [c.rc for c in calls] == [3, 3]
    assert all(c.end is not None and 0 <= c.seconds < 10 for c in calls)


def test_vagrant_calls_are_summarized_and_per_vm_calls_flagged():
    log = ("S\t1700000000.100000\t11\tstatus\t--machine-readable\n"
           "E\t1700000002.600000\t11\t0\n"
           "S\t1700000002.700000\t12\tup\t--no-provision\t--parallel\tweb-1\tdb-1\n"
           "E\t1700000060.700000\t12\t0\n"
           "S\t1700000060.800000\t13\tssh-config\tweb-1\tdb-1\n")   # no end line: still running or killed
    calls = sb.parse_shim_log(log)
    summary = sb.summarize_calls(calls, ["web-1", "db-1"])
    assert summary["count"] == 3 and summary["subcommands"] == ["status", "up", "ssh-config"]
    assert summary["per_vm"] is False and summary["seconds_in_vagrant"] == pytest.approx(60.5)
    assert calls[2].end is None and calls[2].rc is None

    per_vm = sb.parse_shim_log("S\t1.0\t1\tssh-config\tweb-1\nE\t2.0\t1\t0\nS\t2.0\t2\tssh-config\tdb-1\n"
                               "E\t3.0\t2\t0\n")
    summary = sb.summarize_calls(per_vm, ["web-1", "db-1"])
    assert summary["per_vm"] is True and summary["repeated"] == ["ssh-config"]
    assert summary["per_vm_calls"] == ["ssh-config web-1", "ssh-config db-1"]
    # naming the only VM of a one-VM project is not per VM
    assert sb.summarize_calls(per_vm[:1], ["web-1"])["per_vm"] is False


def test_a_decimal_comma_from_the_locale_is_read():
    assert sb.parse_shim_log("S\t1700000000,25\t7\tstatus\nE\t1700000001,75\t7\t0\n")[0].seconds == 1.5


# --- the lab proxy's access log ----------------------------------------------------------------------------

SQUID_LOG = """\
1718000000.101    350 127.0.0.1 TCP_REFRESH_UNMODIFIED/200 151860 GET http://mirror.example.org/debian/dists/bookworm/InRelease - HIER_DIRECT/192.0.2.10 -
1718000003.512   2210 127.0.0.1 TCP_MISS/200 8800512 GET http://mirror.example.org/debian/dists/bookworm/main/binary-amd64/Packages.xz - HIER_DIRECT/192.0.2.10 application/x-xz
1718000010.004     41 127.0.0.1 TCP_MISS/200 48032 GET http://mirror.example.org/debian/pool/main/t/tree/tree_2.1.0-1_amd64.deb - HIER_DIRECT/192.0.2.10 application/vnd.debian.binary-package
1718000010.120     12 127.0.0.1 TCP_HIT/200 26480 GET http://mirror.example.org/debian/pool/main/b/bc/bc_1.07.1-3%2bb1_amd64.deb - HIER_NONE/- application/vnd.debian.binary-package
1718000010.130      2 127.0.0.1 TCP_MEM_HIT/200 63616 GET http://mirror.example.org/debian/pool/main/j/jq/jq_1.6-2.1_amd64.deb - HIER_NONE/- application/vnd.debian.binary-package
1718000010.140     35 127.0.0.1 TCP_REFRESH_UNMODIFIED/200 135268 GET http://mirror.example.org/debian/pool/main/j/jq/libjq1_1.6-2.1_amd64.deb - HIER_DIRECT/192.0.2.10 application/vnd.debian.binary-package
1718000010.150      0 127.0.0.1 TCP_DENIED/403 3900 GET http://elsewhere.example.net/pool/x_1_all.deb - HIER_NONE/- text/html
1718000010.160     51 127.0.0.1 TCP_REFRESH_MODIFIED/200 20000 GET http://mirror.example.org/debian/pool/main/o/oniguruma/libonig5_6.9.8-1_amd64.deb?x=1 - HIER_DIRECT/192.0.2.10 application/vnd.debian.binary-package
"""


def test_deb_requests_in_squids_access_log_are_counted_by_cache_result():
    counts = sb.squid_deb_counts(SQUID_LOG)
    assert (counts.hit, counts.revalidated, counts.miss, counts.other) == (2, 1, 2, 1)
    assert counts.missed == ["tree_2.1.0-1_amd64.deb", "libonig5_6.9.8-1_amd64.deb"]
    assert counts.total == 6
    assert counts.cached_before == 3  # none of the hits was a file this log had downloaded first
    second_vm = ("1 2 c TCP_MISS/200 9 GET http://m.example.org/p/tree_2_amd64.deb - D/x t\n"
                 "3 4 c TCP_HIT/200 9 GET http://m.example.org/p/tree_2_amd64.deb - N/- t\n")
    cold = sb.squid_deb_counts(second_vm)
    assert (cold.miss, cold.hit, cold.cached_before) == (1, 1, 0)
    assert sb.squid_deb_counts("").total == 0


def test_the_log_window_reads_only_what_was_added(tmp_path):
    log = tmp_path / "access.log"
    first, second = SQUID_LOG.splitlines(keepends=True)[:3], SQUID_LOG.splitlines(keepends=True)[3:]
    log.write_text("".join(first))
    window = sb.LogWindow(log).start()
    with open(log, "a") as fh:
        fh.write("".join(second))
    assert window.stop(settle=0) == "".join(second)
    log.write_text(first[0])   # rotated (smaller than the start offset): everything counts
    assert sb.LogWindow(log).start().stop(settle=0) == ""
    rotated = sb.LogWindow(log)
    rotated.offset = 10_000
    assert rotated.stop(settle=0) == first[0]
    assert sb.LogWindow(tmp_path / "absent.log").start().stop(settle=0) == ""
    assert sb.LogWindow(None).start().stop(settle=0) == ""


def test_the_rebuild_verdict_says_when_the_cache_was_not_cold():
    debs = lambda hit, miss, before=None: {  # noqa: E731
        "hit": hit, "revalidated": 0, "miss": miss, "other": 0, "total": hit + miss,
        "missed": ["tree_2.1.0-1_amd64.deb"] * miss, "cached_before": hit if before is None else before}
    cold_ok = {"cold": {"debs": debs(0, 5)}, "warm": {"debs": debs(10, 0)}, "cache_dir": "/c/squid/lab"}
    assert sb.rebuild_verdict(cold_ok) == [
        "target met: the rebuild downloaded no package again (10 of 10 .deb requests served from the cache)"]
    warm_cache = {"cold": {"debs": debs(3, 2)}, "warm": {"debs": debs(9, 1)}, "cache_dir": "/c/squid/lab"}
    verdict = sb.rebuild_verdict(warm_cache)
    assert verdict[0].startswith("target MISSED: the rebuild downloaded 1 .deb again: tree_2.1.0-1_amd64.deb")
    assert "not cold" in verdict[1] and "/c/squid/lab" in verdict[1]
    assert "not counted" in sb.rebuild_verdict({"cold": {"debs": None}, "warm": {"debs": None}})[0]
    # the second VM of a cold run got what the first one downloaded: the cache was cold, and that is said
    second_vm = {"cold": {"debs": debs(5, 5, before=0)}, "warm": {"debs": debs(10, 0)}, "cache_dir": "/c"}
    lines = sb.rebuild_verdict(second_vm)
    assert len(lines) == 2 and "not cold" not in lines[1]
    assert lines[1] == "cold run: 5 .deb downloaded once; the other VMs' 5 requests for the same files came from the cache"


# --- ansible output and tables ------------------------------------------------------------------------------

RECAP = """\
PLAY RECAP *********************************************************************
\x1b[0;32mweb-1\x1b[0m                      : \x1b[0;32mok=13  \x1b[0m changed=0    unreachable=0    failed=0    skipped=0    rescued=0    ignored=0
db-1                       : ok=12   changed=1    unreachable=0    failed=0    skipped=1    rescued=0    ignored=0
"""


def test_the_play_recap_is_read_per_host_and_summed_over_runs():
    assert sb.parse_recap(RECAP) == {"web-1": {"ok": 13, "changed": 0, "unreachable": 0, "failed": 0},
                                     "db-1": {"ok": 12, "changed": 1, "unreachable": 0, "failed": 0}}
    twice = sb.parse_recap(RECAP + RECAP)
    assert twice["db-1"]["changed"] == 2


def report_results(**override) -> dict:
    calls = {"count": 3, "subcommands": ["status", "up", "ssh-config"], "per_vm": False}
    results = {
        "machine": "2 CPUs, 24 GiB, load average 8.0 / 7.0 / 6.0 (1 / 5 / 15 min)", "repeat": 3, "status_repeat": 3,
        "ready": {"2": {"vagrant": [90.0, 88.0, 95.0], "devbox": [93.0, 91.0, 94.0], "own": [1.2, 1.4, 1.3],
                        "devbox_calls": calls, "per_vm": False}},
        "provision": {"2": {"vagrant_per_machine": [120.0, 118.0, 125.0], "ansible_default": [70.0, 72.0, 69.0],
                            "devbox": [50.0, 49.0, None], "devbox_mitogen": [20.0, 21.0, 19.0],
                            "mitogen_fallback": None, "errors": {"devbox": ["exit 2; log x.log"]},
                            "changed": {"vagrant_per_machine": [0, 0, 0], "ansible_default": [0, 0, 0]}}},
        "status": {"2": {"vagrant": [3.2, 3.0, 3.4], "refresh": [1.6, 1.5, 1.7], "cached": [0.8, 0.7, 0.9],
                         "refresh_calls": {"count": 1}, "cached_calls": {"count": 0}}},
        "rebuild": {"size": 2, "cache_dir": "/c",
                    "cold": {"seconds": 400.0, "parts": {"up": 1, "provision": 2},
                             "debs": {"hit": 0, "revalidated": 0, "miss": 10, "other": 0, "total": 10, "missed": []}},
                    "warm": {"seconds": 300.0, "parts": {"devbox up": 300},
                             "debs": {"hit": 10, "revalidated": 0, "miss": 0, "other": 0, "total": 10,
                                      "missed": []}}},
        "errors": [],
    }
    results.update(override)
    return results


def row(text: str, *needles: str) -> list[str]:
    """The cells of the one Markdown table row holding every needle."""
    found = [line for line in text.splitlines() if line.startswith("| ") and all(n in line for n in needles)]
    assert len(found) == 1, (needles, text)
    return [c.strip() for c in found[0].strip("|").split(" | ")]


def test_the_report_prints_the_readme_tables_as_markdown_with_medians_spread_and_one_ratio_direction():
    text = sb.report(report_results())
    assert text.startswith("Machine: 2 CPUs, 24 GiB, load average 8.0")
    # ready: medians 90.0 and 93.0, +3.0 s over the 2 s target: MISSED
    assert row(text, "90.0 s (88.0–95.0)") == ["2", "90.0 s (88.0–95.0)", "93.0 s (91.0–94.0)", "+3.0 s",
                                                "1.3 s (1.2–1.4)", "0.97x", "3: status, up, ssh-config", "no",
                                                "**MISSED**"]
    # provision: the failed devbox run is left out of its samples (and reported), ratios on medians
    assert row(text, "120.0 s (118.0–125.0)") == ["2", "120.0 s (118.0–125.0)", "70.0 s (69.0–72.0)",
                                                   "49.5 s (49.0–50.0)", "2.42x", "1.41x", "0 / 0", "met"]
    assert "2 VMs: devbox failed: exit 2; log x.log" in text
    assert row(text, "Mitogen ran") == ["2", "20.0 s (19.0–21.0)", "2.48x", "6.00x", "3.50x", "Mitogen ran"]
    # status: --refresh is the like-for-like row, the cached one is labelled apart
    assert row(text, "--refresh") == ["2", "devbox status --refresh (asks Vagrant: like for like)",
                                      "3.20 s (3.00–3.40)", "1.60 s (1.50–1.70)", "2.00x", "1"]
    assert row(text, "cached") == ["2", "devbox status, cached (no vagrant call: not like for like)",
                                   "3.20 s (3.00–3.40)", "0.80 s (0.70–0.90)", "4.00x", "0"]
    assert row(text, "rebuild: devbox destroy")[-1] == "met"
    assert "ratio cold ÷ rebuild: 1.33x" in text and "target met: the rebuild downloaded no package again" in text
    # every timing table says which way its ratio goes
    assert text.count("ratio = baseline ÷ devbox (medians): above 1 means devbox is faster") == 3
    assert "ratio = baseline ÷ devbox --mitogen" in text


def test_missed_targets_print_missed():
    results = report_results()
    results["ready"]["2"].update(vagrant=[90.0], devbox=[91.0])                     # +1 s: met
    results["provision"]["2"].update(devbox=[65.0], errors={})                       # 1.85x < 2 VMs: missed
    results["rebuild"]["warm"]["debs"].update(hit=9, miss=1, missed=["tree_2_amd64.deb"])
    text = sb.report(results)
    assert row(text, "90.0 s (1 run)")[-1] == "met"
    assert row(text, "120.0 s (118.0–125.0)")[-1] == "**MISSED**"
    assert row(text, "rebuild: devbox destroy")[-1] == "**MISSED**"
    assert "target MISSED: the rebuild downloaded 1 .deb again" in text
    results["ready"]["2"]["per_vm"] = True   # a per-VM vagrant call misses the target whatever the time
    assert row(sb.report(results), "90.0 s (1 run)")[-1] == "**MISSED**"


def test_help_works_outside_the_lab():
    run = subprocess.run([sys.executable, str(REPO / "bench" / "speed_bench.py"), "--help"], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0 and "--only" in run.stdout and "--rebuild-size" in run.stdout


def test_outside_the_lab_it_stops_before_doing_anything(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in sb.LAB_VARS}
    run = subprocess.run([sys.executable, str(REPO / "bench" / "speed_bench.py"), "--workdir", str(tmp_path / "w")],
                         capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode != 0 and "inside the lab" in run.stderr
    assert not (tmp_path / "w").exists()


def test_only_accepts_known_benchmarks():
    assert sb.parse_only("ready,status") == ["ready", "status"]
    with pytest.raises(Exception):
        sb.parse_only("ready,boot")


# --- the whole run, with every VM command replaced --------------------------------------------------------

def test_a_run_follows_the_order_of_the_issue_and_writes_every_figure(tmp_path, monkeypatch, capsys):
    """main() end to end with `Bench.run` faked (only `devbox init` and `devbox plan` really run): the order of
    the commands per size, the vagrant calls counted from the shim log, the proxy log windows, the JSON."""
    proxy_log = tmp_path / "access.log"
    proxy_log.write_text("")
    for key, value in {"DEVBOX_LAB": "t-bench", "VAGRANT_HOME": str(tmp_path / "vh"),
                       "DEVBOX_APT_PROXY": "http://192.0.2.1:3142", sb.PROXY_LOG_VAR: str(proxy_log)}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sb, "box_in_pool", lambda env: False)
    deb = ("1718000010.004 41 127.0.0.1 {code}/200 48032 GET http://mirror.example.org/debian/pool/main/t/tree/"
           "tree_2.1.0-1_amd64.deb - HIER_DIRECT/192.0.2.10 application/vnd.debian.binary-package\n")
    seen: list[str] = []
    real_run = sb.Bench.run

    seconds = {"vagrant up": 60.0, "devbox up": 61.0, "vagrant provision": 90.0, "ansible-playbook": 50.0,
               "devbox provision --full --mitogen": 15.0, "devbox provision --full": 30.0}

    def fake_run(self, label, argv, *, cwd, env=None, timeout=3600, check=True):
        seen.append(label)
        if argv[-1] == "init":
            return real_run(self, label, argv, cwd=cwd, env=env, timeout=timeout, check=check)
        log = self.logs / f"fake-{len(seen)}.log"
        provisioning = argv[0].endswith("ansible-playbook") or argv[:2] == ["vagrant", "provision"]
        log.write_text(RECAP.replace("changed=1", "changed=0") if provisioning else "")
        names = [m["name"] for m in json.loads((cwd / ".devbox" / "plan.json").read_text())["machines"]]
        if argv[:2] == ["vagrant", "up"]:
            calls = [argv[1:]]
        elif argv[-1] == "up" or argv[-2:] == ["up", "--no-provision"]:   # what devbox up does
            calls = [["status", "--machine-readable"], ["up", "--no-provision", "--parallel", *names],
                     ["ssh-config", *names]]
        elif argv[-2:] == ["status", "--refresh"]:
            calls = [["status", "--machine-readable"]]
        else:
            calls = []
        with open(self.shim_log, "a") as fh:
            for i, c in enumerate(calls):
                fh.write("S\t%d.0\t%d\t%s\nE\t%d.5\t%d\t0\n" % (i, 100 + i, "\t".join(c), i, 100 + i))
        if "converge" in label:   # the first provisioning downloads the package
            proxy_log.write_text(proxy_log.read_text() + deb.format(code="TCP_MISS"))
        if argv[-1] == "up":      # the rebuild finds it in the cache
            proxy_log.write_text(proxy_log.read_text() + deb.format(code="TCP_HIT"))
        key = next((k for k in seconds if k in label), None)
        return seconds.get(key, 1.0), log, 0

    monkeypatch.setattr(sb.Bench, "run", fake_run)
    monkeypatch.setattr(sb.time, "sleep", lambda seconds: None)   # LogWindow's settle time
    out_json = tmp_path / "speed.json"
    code = sb.main(["--sizes", "1", "2", "--repeat", "2", "--status-repeat", "2", "--workdir", str(tmp_path / "w"),
                    "--json", str(out_json)])
    assert code == 0, capsys.readouterr()
    strip = lambda label: re.sub(r"^\dvm ", "", label)  # noqa: E731
    ready = ["vagrant up --no-provision #1", "vagrant destroy -f #1", "devbox up --no-provision #1",
             "devbox destroy --yes #1", "vagrant up --no-provision #2", "vagrant destroy -f #2",
             "devbox up --no-provision #2"]   # A B A B, the VMs of the last round kept
    status = [f"{cmd} #{i}" for i in (1, 2) for cmd in ("vagrant status", "devbox status --refresh", "devbox status")]
    provision = [f"{cmd} #{i}" for i in (1, 2) for cmd in (
        "vagrant provision (ansible provisioner per machine)", "ansible-playbook (defaults)",
        "devbox provision --full", "devbox provision --full --mitogen")]
    assert [strip(s) for s in seen] == [
        "devbox init", "warm-up: vagrant up (box upload)", "warm-up: vagrant destroy", *ready, *status,
        "devbox destroy --yes",
        "devbox init", *ready, "devbox provision --full (converge, first run)", *provision, *status,
        "devbox destroy --yes (before the rebuild)", "devbox up (rebuild, cache warm)", "devbox destroy --yes",
    ]
    results = json.loads(out_json.read_text())
    ready = results["ready"]["2"]
    assert (ready["vagrant"], ready["devbox"], ready["own"]) == ([60.0, 60.0], [61.0, 61.0], [59.5, 59.5])
    assert ready["devbox_calls"]["subcommands"] == ["status", "up", "ssh-config"]
    assert ready["per_vm"] is False and ready["vagrant_calls"]["count"] == 1
    prov = results["provision"]["2"]
    assert (prov["vagrant_per_machine"], prov["ansible_default"], prov["devbox"]) == ([90.0] * 2, [50.0] * 2,
                                                                                      [30.0] * 2)
    assert prov["changed"] == {"vagrant_per_machine": [0, 0], "ansible_default": [0, 0]} and prov["vagrant_runs"] == 2
    assert prov["devbox_mitogen"] == [15.0, 15.0] and prov["mitogen_fallback"] is None
    assert (tmp_path / "w" / "vms-2" / sb.ALT_VAGRANTFILE).exists()
    status_1 = results["status"]["1"]
    assert (status_1["refresh_calls"]["count"], status_1["cached_calls"]["count"]) == (1, 0)
    assert len(status_1["vagrant"]) == len(status_1["refresh"]) == len(status_1["cached"]) == 2
    rebuild = results["rebuild"]
    assert rebuild["size"] == 2 and rebuild["cold"]["seconds"] == 91.0 and rebuild["warm"]["seconds"] == 61.0
    assert (rebuild["cold"]["debs"]["miss"], rebuild["warm"]["debs"]["miss"], rebuild["warm"]["debs"]["hit"]) == \
        (1, 0, 1)
    assert results["warm_up"]["box_in_pool_before"] is False
    printed = capsys.readouterr().out
    assert "target met: the rebuild downloaded no package again" in printed
    assert "provision: the same playbook on converged VMs" in printed
    assert row(printed, "Mitogen ran") == ["2", "15.0 s (15.0–15.0)", "2.00x", "6.00x", "3.33x", "Mitogen ran"]
    assert row(printed, "90.0 s")[-1] == "met"   # 3x the per-machine provisioner at 2 VMs, faster than ansible

