"""Incremental re-provisioning: digests (real ansible-core parsing), the plan, the subset playbook, the ledger."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from helpers import INCREMENTAL, add_cache_role, append, copy_project, git_commit, no_converged_snapshot, replace, write
from provisioner.incremental.changes import ChangesError, scan_project
from provisioner.incremental.subset import plan_incremental, render_playbook, subset_playbook
from provisioner.incremental.ledger import completed_units, ledger_json, ledger_of, record_run, roles_completed

FIXTURE = INCREMENTAL / "project"
EXTRA = {"out_dir": "/nonexistent"}


@pytest.fixture
def project(tmp_path):
    return copy_project(FIXTURE, tmp_path / "project")


def scan(project, **kw):
    return scan_project(project / "playbooks" / "site.yml", project / "inventory", project_dir=project,
                        extra_vars=kw.pop("extra_vars", EXTRA), **kw)


def applied(digests):
    """A ledger saying the whole run was applied on every VM."""
    return record_run({}, digests, {vm: {u.key for u in digests.units_for(vm)} for vm in digests.vms})


def plan_after(project, change, **kw):
    before = scan(project)
    ledger = applied(before)
    change(project)
    after = scan(project)
    return plan_incremental(ledger, after, **kw), after


def selected(plan):
    return {v.vm: sorted(plan.selected(v.vm)) for v in plan.vms if not v.nothing}


def test_nothing_changed_selects_nothing(project):
    plan, _ = plan_after(project, lambda p: None)
    assert plan.nothing_to_do
    assert selected(plan) == {}


def test_first_run_is_everything_and_says_why(project):
    plan = plan_incremental({}, scan(project))
    assert all(v.everything for v in plan.vms)
    assert plan.vm("db-1").reasons() == ["never provisioned by devbox"]
    assert plan.run_whole_playbook


def test_template_edit_reruns_that_role_on_its_vms_only(project):
    plan, _ = plan_after(project, lambda p: append(p / "playbooks/roles/webapp/templates/app.conf.j2", "# x\n"))
    # proxy comes along because webapp notifies its handler; the play's own tasks set host_dir for webapp
    assert selected(plan) == {vm: ["web", "web/proxy", "web/webapp"] for vm in ("web-1", "web-2")}
    web = plan.vm("web-1")
    assert not web.everything
    reasons = {c.unit: c.reasons for c in web.units}
    assert reasons["web/webapp"] == ("role webapp: templates/app.conf.j2 changed",)
    assert reasons["web/proxy"] == ("defines a handler that role webapp (play web) notifies",)
    assert any("host_dir" in r or "runs with" in r for r in reasons["web"])


def test_defaults_change_reruns_role(project):
    plan, _ = plan_after(project, lambda p: append(p / "playbooks/roles/db/defaults/main.yml", "db_x: 2\n"))
    assert selected(plan) == {"db-1": ["db", "db/db"]}
    assert "role db: defaults/main.yml changed" in plan.vm("db-1").reasons()


def test_group_vars_change_reruns_everything_on_that_group(project):
    plan, _ = plan_after(project, lambda p: append(p / "inventory/group_vars/web.yml", "extra: 1\n"))
    assert set(selected(plan)) == {"web-1", "web-2"}
    assert plan.vm("web-1").everything and plan.vm("db-1").nothing
    assert "inventory group_vars/web.yml changed" in plan.vm("web-2").reasons()


def test_new_group_vars_file_counts(project):
    plan, _ = plan_after(project, lambda p: write(p / "inventory/group_vars/db/extra.yml", "db_more: 1\n"))
    assert set(selected(plan)) == {"db-1"}
    assert "inventory group_vars/db/extra.yml added" in plan.vm("db-1").reasons()


def test_host_vars_change_is_that_vm_only(project):
    plan, _ = plan_after(project, lambda p: write(p / "inventory/host_vars/web-2.yml", "app_port: 9090\n"))
    assert set(selected(plan)) == {"web-2"} and plan.vm("web-2").everything


def test_connection_vars_are_not_a_change(project):
    plan, _ = plan_after(project, lambda p: write(
        p / "inventory/zz-connection.yml", "all:\n  hosts:\n    web-1:\n      ansible_port: 2222\n"))
    assert plan.nothing_to_do


def test_change_in_dependency_reruns_dependent_role(project):
    plan, _ = plan_after(project, lambda p: write(p / "playbooks/roles/base/files/base.txt", "base file v2\n"))
    assert selected(plan)["web-1"] == ["web", "web/proxy", "web/webapp"]
    assert "role base: files/base.txt changed" in plan.vm("web-1").reasons()
    assert "db-1" not in selected(plan)


def test_new_role_added_to_play(project):
    def add_role(p):
        add_cache_role(p, "- ansible.builtin.copy:\n    content: cache\n"
                          "    dest: \"{{ out_dir }}/{{ inventory_hostname }}/cache\"\n    mode: '0644'\n")
    plan, after = plan_after(project, add_role)
    assert selected(plan) == {"db-1": ["db", "db/cache"]}
    assert any("cache not applied yet" in r for r in plan.vm("db-1").reasons())


def test_play_level_change_reruns_whole_play(project):
    def change(p):
        replace(p / "playbooks/site.yml", 'host_dir: "{{ out_dir }}/{{ inventory_hostname }}"',
                'host_dir: "{{ out_dir }}/{{ inventory_hostname }}/"')
    plan, _ = plan_after(project, change)
    assert selected(plan) == {vm: ["web", "web/proxy", "web/webapp"] for vm in ("web-1", "web-2")}
    assert "play web changed" in plan.vm("web-1").reasons()


def test_dynamic_include_role_runs_everything_for_its_vms(project):
    def change(p):
        append(p / "playbooks/roles/db/tasks/main.yml",
               "\n- ansible.builtin.include_role:\n    name: \"{{ db_flavour | default('base') }}\"\n")
    plan, _ = plan_after(project, change)
    assert plan.vm("db-1").everything and plan.vm("web-1").nothing
    assert any("cannot be sure" in r and "templated role name" in r for r in plan.vm("db-1").reasons())


def test_static_include_role_is_followed(project):
    append(project / "playbooks/roles/db/tasks/main.yml", "\n- ansible.builtin.include_role:\n    name: base\n")
    plan, _ = plan_after(project, lambda p: write(p / "playbooks/roles/base/defaults/main.yml",
                                                  "base_packages_marker: v2\n"))
    assert "db/db" in plan.selected("db-1")
    assert "role base: defaults/main.yml changed" in plan.vm("db-1").reasons()


def test_handler_change_alone_does_not_rerun_the_notifier(project):
    plan, _ = plan_after(project, lambda p: append(p / "playbooks/roles/proxy/handlers/main.yml",
                                                   "  changed_when: false\n"))
    assert selected(plan)["web-1"] == ["web", "web/proxy"]


def _proxy_reads_a_fact_set_by_common(p):
    append(p / "playbooks/roles/common/tasks/main.yml", "\n- ansible.builtin.set_fact:\n    common_stamp: one\n")
    append(p / "playbooks/roles/proxy/tasks/main.yml", "\n- ansible.builtin.debug:\n    msg: \"{{ common_stamp }}\"\n")


def test_fact_set_by_changed_role_reruns_its_readers(project):
    _proxy_reads_a_fact_set_by_common(project)
    plan, _ = plan_after(project, lambda p: append(p / "playbooks/roles/common/tasks/main.yml",
                                                   "\n- ansible.builtin.debug:\n    msg: changed\n"))
    web = {c.unit: c for c in plan.vm("web-1").units}
    assert web["web/proxy"].dirty and "`common_stamp`" in web["web/proxy"].reasons[0]
    # webapp neither reads common_stamp nor changed, and proxy notifies nothing: webapp does not run
    assert "web/webapp" not in web
    assert selected(plan)["db-1"] == ["common", "common/common"]


def test_selected_role_pulls_the_role_that_sets_its_facts(project):
    _proxy_reads_a_fact_set_by_common(project)
    plan, _ = plan_after(project, lambda p: write(p / "playbooks/roles/proxy/defaults/main.yml",
                                                  "proxy_timeout: 31\n"))
    web = {c.unit: c for c in plan.vm("web-1").units}
    assert "common/common" in web and not web["common/common"].dirty
    assert "db-1" not in selected(plan)


def _proxy_reads_db_port(p):
    write(p / "playbooks/roles/proxy/templates/upstream.j2", "db {{ hostvars[groups['db'][0]]['db_port'] }}\n")
    append(p / "playbooks/roles/proxy/tasks/main.yml",
           "\n- ansible.builtin.template:\n    src: upstream.j2\n    dest: \"{{ host_dir }}/upstream\"\n"
           "    mode: '0644'\n")


def test_another_vms_variable_read_through_hostvars_reruns_the_reader(project):
    _proxy_reads_db_port(project)

    plan, _ = plan_after(project, lambda p: replace(p / "inventory/hosts.yml", "db_port: 5432", "db_port: 5433"))
    assert plan.vm("db-1").everything
    web = {c.unit: c for c in plan.vm("web-1").units}
    assert web["web/proxy"].dirty and "variables of db-1 (read through hostvars) changed" in web["web/proxy"].reasons
    assert "web/webapp" not in web and not plan.gather_facts_for  # no facts of other hosts are read


def test_new_vm_in_the_inventory_reruns_roles_reading_groups(project):
    _proxy_reads_db_port(project)

    def change(p):
        replace(p / "inventory/hosts.yml", "        db-1:\n", "        db-2: {}\n        db-1:\n")
    plan, _ = plan_after(project, change)
    assert plan.vm("db-2").everything and plan.vm("db-2").reasons() == ["never provisioned by devbox"]
    assert "inventory groups and their hosts changed" in plan.vm("web-2").reasons()
    assert plan.vm("db-1").nothing


def test_reading_another_hosts_facts_adds_a_fact_gathering_play(project):
    replace(project / "playbooks/site.yml", "gather_facts: false", "gather_facts: true", 1)  # play common
    append(project / "playbooks/roles/proxy/tasks/main.yml",
           "\n- ansible.builtin.debug:\n    msg: \"{{ hostvars['db-1']['ansible_hostname'] | default('') }}\"\n")
    plan, after = plan_after(project, lambda p: write(p / "playbooks/roles/proxy/defaults/main.yml",
                                                      "proxy_timeout: 3\n"))
    assert plan.gather_facts_for == ("web-1", "web-2", "db-1")
    subset = subset_playbook(plan, after)
    assert subset.plays[0].play is None and subset.data[0]["gather_facts"] is True


def test_global_input_change_is_everything(project):
    plan, _ = plan_after(project, lambda p: write(p / "ansible.cfg", "[defaults]\nforks = 5\n"))
    assert all(v.everything for v in plan.vms)
    assert "project ansible.cfg added" in plan.vm("db-1").reasons()


def test_extra_vars_change_is_everything(project):
    before = scan(project)
    after = scan(project, extra_vars={"out_dir": "/elsewhere"})
    plan = plan_incremental(applied(before), after)
    assert all(v.everything for v in plan.vms)


def test_full_flag_selects_everything(project):
    plan, _ = plan_after(project, lambda p: None, full=True)
    assert all(v.everything and v.reasons() == ["--full"] for v in plan.vms)


def test_subset_playbook_limits_hosts_and_roles(project):
    plan, after = plan_after(project, lambda p: append(p / "playbooks/roles/db/templates/db.conf.j2", "#\n"))
    subset = subset_playbook(plan, after)
    assert [g.play for g in subset.plays] == ["db"]
    (play,) = subset.data
    assert play["hosts"] == ["db", "&~^(db\\-1)$"] and play["roles"] == [{"role": "db"}]
    assert play["gather_facts"] is False and play["name"] == "db"
    text = render_playbook(subset, "playbooks/site.yml")
    assert yaml.safe_load(text)[0]["roles"] == [{"role": "db"}]


def test_subset_playbook_hosts_pattern_resolves_with_real_inventory(project):
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    plan, after = plan_after(project, lambda p: write(p / "inventory/host_vars/web-2.yml", "app_port: 1\n"))
    subset = subset_playbook(plan, after)
    inventory = InventoryManager(loader=DataLoader(), sources=[str(project / "inventory")])
    for generated, play in zip(subset.plays, subset.data):
        assert [h.name for h in inventory.get_hosts(play["hosts"])] == ["web-2"]


def test_different_selections_in_one_play_become_separate_plays(project):
    def change(p):
        write(p / "inventory/host_vars/web-2.yml", "app_port: 1\n")
        write(p / "playbooks/roles/proxy/defaults/main.yml", "proxy_timeout: 31\n")
    plan, after = plan_after(project, change)
    subset = subset_playbook(plan, after)
    web = [(g.vms, g.units) for g in subset.plays if g.play == "web"]
    assert (("web-1",), ("web", "web/proxy")) in web
    assert (("web-2",), ("web", "web/webapp", "web/proxy")) in web


def test_broken_playbook_is_a_clear_error(project):
    (project / "playbooks/site.yml").write_text("- hosts: all\n  roles: [nope_no_such_role]\n")
    with pytest.raises(ChangesError, match="cannot parse playbook"):
        scan(project)


def test_digests_never_hold_values(project):
    write(project / "inventory/group_vars/db.yml", "db_name: app\ndb_password: s3cr3t-value\n")
    digests = scan(project)
    blob = repr(applied(digests))
    assert "s3cr3t" not in blob and "db_password" not in blob


# ---------------------------------------------------------------------------------------------- ledger

def _events(*spec):
    """Build runner events: ("play",), ("ok"|"failed"|"unreachable", host, role), ("handlers",), ("stats",)."""
    out = []
    for item in spec:
        kind = item[0]
        if kind == "play":
            out.append({"event": "playbook_on_play_start", "event_data": {}})
        elif kind == "stats":
            out.append({"event": "playbook_on_stats", "event_data": {}})
        elif kind == "handlers":
            out.append({"event": "playbook_on_handler_task_start", "event_data": {}})
        else:
            out.append({"event": f"runner_on_{kind}", "event_data": {"host": item[1], "role": item[2]}})
    return out


def test_roles_completed_reads_runner_events():
    events = _events(("play",), ("ok", "h", "a"), ("ok", "x", "a"), ("failed", "h", "b"), ("stats",))
    (play,) = roles_completed(events, "h")
    assert play.steps == [("a", False), ("b", True)] and play.ended and play.failed


def test_failed_run_records_only_roles_that_finished(project):
    digests = scan(project)
    plan = plan_incremental({}, digests, full=True)
    subset = subset_playbook(plan, digests)
    events = _events(("play",), ("ok", "db-1", "common"), ("play",), ("play",), ("ok", "db-1", None),
                     ("failed", "db-1", "db"), ("stats",))
    done = completed_units(events, "db-1", subset, digests)
    assert done == {"common", "common/common"}


def test_interrupted_run_records_nothing_unfinished(project):
    digests = scan(project)
    subset = subset_playbook(plan_incremental({}, digests), digests)
    # interrupted inside webapp's dependency (base): nothing of play web counts; play common had ended
    events = _events(("play",), ("ok", "web-1", "common"), ("play",), ("ok", "web-1", None), ("ok", "web-1", "base"))
    assert completed_units(events, "web-1", subset, digests) == {"common", "common/common"}


def test_handler_failure_records_nothing_of_the_play(project):
    digests = scan(project)
    subset = subset_playbook(plan_incremental({}, digests), digests)
    events = _events(("play",), ("ok", "web-1", "common"), ("play",), ("ok", "web-1", "webapp"),
                     ("ok", "web-1", "proxy"), ("handlers",), ("failed", "web-1", "proxy"), ("stats",))
    assert completed_units(events, "web-1", subset, digests) == {"common", "common/common"}


def test_record_run_keeps_unfinished_units_stale(project):
    before = scan(project)
    ledger = applied(before)
    write(project / "inventory/group_vars/db.yml", "db_name: other\n")
    after = scan(project)
    plan = plan_incremental(ledger, after)
    assert plan.vm("db-1").everything
    # the run finished play common on db-1 but failed in role db
    new = record_run(ledger, after, {"db-1": {"common", "common/common"}})
    replan = plan_incremental(new, after)
    assert sorted(replan.selected("db-1")) == ["db", "db/db"]
    # round trip through the state file's JSON
    assert ledger_of({"ledger": ledger_json(new)}) == new


# ---------------------------------------------------------------------------------- devbox provision / status

VMS = ("web-1", "db-1")


@pytest.fixture(scope="module")
def booted_template(tmp_path_factory):
    """A real `devbox init` project (web-1, db-1) whose playbooks are the fixture's, booted with fakes."""
    from fakes import FakePlaybookRunner, FakeSshProbe, FakeVagrant, playbook_ok
    from provisioner.app import Devbox

    root = tmp_path_factory.mktemp("devbox") / "p"
    (root / "prod").mkdir(parents=True)
    (root / "prod" / "hosts.ini").write_text("[web]\nweb01.example.com\n\n[db]\ndb01.example.com\n")
    copy_project(FIXTURE / "playbooks", root / "playbooks")
    git_commit(root, "prod", "playbooks", message="playbooks")
    Devbox(project_dir=root).init(inventory=root / "prod" / "hosts.ini")
    no_converged_snapshot(root)
    vagrant = FakeVagrant({n: "not_created" for n in VMS}, allow=("status", "up", "ssh_config"))
    Devbox(project_dir=root, vagrant=vagrant, playbooks=FakePlaybookRunner(playbook_ok(*VMS)),
           ssh_probe=FakeSshProbe(ready=VMS)).up()
    return root


@pytest.fixture
def devbox_project(booted_template, tmp_path):
    return copy_project(booted_template, tmp_path / "p")


def _seed_ledger(root):
    """What a successful full run records (the fake runner sends no events, so the test writes it)."""
    from provisioner.incremental.ledger import LEDGER_KEY
    from provisioner.incremental.reprovision import prepare
    from provisioner.project.state import load_state, save_state

    run = prepare(devbox_dir=root / ".devbox", playbook=root / "playbooks/site.yml", inventory=root / ".devbox/inventory",
                  project_dir=root, write=False)
    state = load_state(root / ".devbox/state.json")
    state.other[LEDGER_KEY] = ledger_json(applied(run.digests))
    save_state(root / ".devbox/state.json", state)


def _invoke(root, args, runner=None, probe=None):
    from click.testing import CliRunner

    from fakes import FakePlaybookRunner, FakeSshProbe, FakeVagrant
    from provisioner.app import Devbox
    from provisioner.cli.main import main

    app = Devbox(project_dir=root, vagrant=FakeVagrant({n: "running" for n in VMS}),
                 playbooks=runner or FakePlaybookRunner(), ssh_probe=probe or FakeSshProbe())
    result = CliRunner(env={"COLUMNS": "250"}).invoke(main, ["-C", str(root), *args], obj=app, catch_exceptions=False)
    return result


def test_provision_with_nothing_changed_runs_nothing(devbox_project):
    _seed_ledger(devbox_project)
    result = _invoke(devbox_project, ["provision"])  # the fake runner fails on any run
    assert result.exit_code == 0, result.output
    assert "nothing changed since the last successful run: no VM contacted" in result.output


def test_provision_dry_run_lists_what_and_why_and_runs_nothing(devbox_project):
    _seed_ledger(devbox_project)
    append(devbox_project / "playbooks/roles/webapp/templates/app.conf.j2", "# tuned\n")
    result = _invoke(devbox_project, ["provision", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would run" in result.output and "role webapp: templates/app.conf.j2 changed" in result.output
    assert not (devbox_project / ".devbox/incremental").exists()  # a dry run writes nothing


def test_provision_runs_the_subset_playbook_on_the_changed_vm_only(devbox_project):
    from fakes import FakePlaybookRunner, playbook_ok

    _seed_ledger(devbox_project)
    append(devbox_project / "playbooks/roles/db/templates/db.conf.j2", "# tuned\n")
    runner = FakePlaybookRunner(playbook_ok("db-1"))
    result = _invoke(devbox_project, ["provision"], runner=runner)
    assert result.exit_code == 0, result.output
    [call] = runner.calls
    generated = devbox_project / ".devbox/incremental/site.yml"
    assert call["playbook"] == generated
    assert call["limit"] == "db-1"  # devbox's own stamp play after the subset must not reach web-1 either
    plays = yaml.safe_load(generated.read_text())
    assert [(p["hosts"], p["roles"]) for p in plays] == [(["db", "&~^(db\\-1)$"], [{"role": "db"}])]
    assert (devbox_project / ".devbox/incremental/roles").resolve() == (devbox_project / "playbooks/roles").resolve()
    assert "what ran, and why" in result.output


def test_provision_full_runs_the_playbook_itself(devbox_project):
    from fakes import FakePlaybookRunner, playbook_ok

    _seed_ledger(devbox_project)
    runner = FakePlaybookRunner(playbook_ok(*VMS))
    result = _invoke(devbox_project, ["provision", "--full"], runner=runner)
    assert result.exit_code == 0, result.output
    assert runner.calls[0]["playbook"] == (devbox_project / "playbooks/site.yml").resolve()


def test_full_and_dry_run_refuse_tags(devbox_project):
    result = _invoke(devbox_project, ["provision", "--dry-run", "--tags", "x"])
    assert result.exit_code == 2 and "--dry-run cannot be combined" in result.output


def test_status_shows_pending_changes_per_vm(devbox_project):
    from fakes import FakeSshProbe

    _seed_ledger(devbox_project)
    write(devbox_project / "playbooks/roles/db/defaults/main.yml", "db_unused_default: 2\n")
    result = _invoke(devbox_project, ["status"], probe=FakeSshProbe(reachable=VMS))
    assert result.exit_code == 0, result.output
    assert "pending changes" in result.output and "role db: defaults/main.yml changed" in result.output


def test_handlers_flushed_between_sections_do_not_hide_later_tasks(project):
    digests = scan(project)
    subset = subset_playbook(plan_incremental({}, digests), digests)
    events = _events(("play",), ("ok", "web-1", "common"), ("play",), ("ok", "web-1", None), ("handlers",),
                     ("ok", "web-1", None))
    events.insert(-1, {"event": "playbook_on_task_start", "event_data": {}})
    events += [{"event": "playbook_on_task_start", "event_data": {}}] + _events(
        ("ok", "web-1", "base"), ("ok", "web-1", "webapp"), ("ok", "web-1", "proxy"), ("stats",))
    (common, web) = roles_completed(events, "web-1")
    assert [role for role, _ in web.steps] == [None, None, "base", "webapp", "proxy"]
    assert completed_units(events, "web-1", subset, digests) >= {"web", "web/webapp", "web/proxy"}


def test_a_play_cut_short_by_another_hosts_failure_records_only_what_the_host_went_past(project):
    digests = scan(project)
    subset = subset_playbook(plan_incremental({}, digests), digests)
    # web-2 fails in webapp; with any_errors_fatal web-1 stops too, its proxy role never ran: nothing after base
    events = _events(("play",), ("ok", "web-1", "common"), ("ok", "web-2", "common"), ("play",),
                     ("ok", "web-1", "base"), ("ok", "web-2", "base"), ("ok", "web-1", "webapp"),
                     ("failed", "web-2", "webapp"), ("stats",))
    assert completed_units(events, "web-1", subset, digests) == {"common", "common/common"}


def test_real_cli_process_with_nothing_changed_contacts_nothing(devbox_project):
    """The whole `devbox provision` process, real adapters: with nothing changed it must not start vagrant or
    Ansible at all (there are no VMs here: any attempt would fail). Prints its wall time (target: < 3 s)."""
    import os
    import subprocess
    import sys
    import time

    _seed_ledger(devbox_project)
    devbox = Path(sys.executable).parent / "devbox"
    # the tree under test (a checkout run with PYTHONPATH), not whichever devbox the venv has installed
    tree = {k: v for k, v in os.environ.items() if k == "PYTHONPATH"}
    for attempt in ("full check", "quick check"):  # the first leaves the marker the second answers from
        started = time.monotonic()
        proc = subprocess.run([str(devbox), "-C", str(devbox_project), "provision"], capture_output=True,
                              text=True, env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", **tree}, timeout=120)
        seconds = time.monotonic() - started
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "nothing changed since the last successful run: no VM contacted" in proc.stdout
        assert not (devbox_project / ".devbox/runner").exists()  # ansible-runner never started
        print(f"[timing] devbox provision, nothing changed ({attempt}): {seconds:.2f} s")


def test_quick_check_answers_nothing_without_parsing_and_notices_any_edit(project):
    from provisioner.incremental import reprovision
    from provisioner.incremental.ledger import LEDGER_KEY
    from provisioner.project.state import load_state, save_state

    kw = dict(devbox_dir=project / ".devbox", playbook=project / "playbooks/site.yml",
              inventory=project / "inventory", project_dir=project, extra_vars=EXTRA)
    state = load_state(project / ".devbox/state.json")
    state.other[LEDGER_KEY] = ledger_json(applied(scan(project)))
    save_state(project / ".devbox/state.json", state)

    first = reprovision.prepare(**kw)
    assert first.digests is not None and first.nothing_to_do  # a full check, which leaves the marker
    quick = reprovision.prepare(**kw)
    assert quick.digests is None and quick.nothing_to_do and quick.names == ("web-1", "web-2", "db-1")
    assert reprovision.prepare(**kw, full=True).digests is not None  # --full never takes the shortcut

    template = project / "playbooks/roles/proxy/handlers/main.yml"
    original = template.read_text()
    template.write_text(original + "# same size? no: any byte counts\n")
    edited = reprovision.prepare(**kw, write=False)
    assert edited.digests is not None and "web/proxy" in edited.plan.selected("web-1")
    template.write_text(original)
    assert reprovision.prepare(**kw).digests is None  # back as it was: nothing to do, quickly

    (project / "inventory/group_vars/db.yml").write_text("db_name: changed\n")
    assert reprovision.prepare(**kw).digests is not None  # the inventory is watched too


def test_quick_check_imports_no_ansible(project):
    import subprocess
    import sys

    from provisioner.incremental import reprovision
    from provisioner.incremental.ledger import LEDGER_KEY
    from provisioner.project.state import load_state, save_state

    state = load_state(project / ".devbox/state.json")
    state.other[LEDGER_KEY] = ledger_json(applied(scan(project)))
    save_state(project / ".devbox/state.json", state)
    args = dict(devbox_dir=str(project / ".devbox"), playbook=str(project / "playbooks/site.yml"),
                inventory=str(project / "inventory"), project_dir=str(project), extra_vars=EXTRA)
    reprovision.prepare(**{k: Path(v) if k != "extra_vars" else v for k, v in args.items()})  # leaves the marker
    code = ("import sys; from pathlib import Path; from provisioner.incremental.reprovision import prepare; "
            f"a = {args!r}; run = prepare(**{{k: Path(v) if k != 'extra_vars' else v for k, v in a.items()}}); "
            "print(run.digests is None, 'ansible' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.split() == ["True", "False"], proc.stdout + proc.stderr


VAULTED = """  vars:
    api_token: !vault |
          $ANSIBLE_VAULT;1.1;AES256
          {}
"""


def test_a_vault_encrypted_play_variable_is_digested_without_decrypting_it(project):
    """Development runs have no vault password: a `!vault` value in a play's vars is compared as its ciphertext,
    and a new ciphertext (the secret was rotated) re-runs that play."""
    cipher = "3" * 64 + "\n          " + "6" * 64
    replace(project / "playbooks/site.yml", "  hosts: web\n  gather_facts: false\n",
            "  hosts: web\n  gather_facts: false\n" + VAULTED.format(cipher), count=1)
    plan, _ = plan_after(project, lambda p: replace(p / "playbooks/site.yml", cipher, cipher.replace("6", "7")))
    assert selected(plan) == {vm: ["web", "web/proxy", "web/webapp"] for vm in ("web-1", "web-2")}
    assert "play web changed" in plan.vm("web-1").reasons()


# --- four roles shaped like the upstream Galaxy roles (issue 15, item 10) ---------------------------------------

FOUR_ROLES = INCREMENTAL / "four-roles"


@pytest.fixture
def four_roles(tmp_path):
    return copy_project(FOUR_ROLES, tmp_path / "four-roles")


def scan_four(project):
    return scan_project(project / "playbooks" / "site.yml", project / "inventory", project_dir=project)


def plan_four(project, change):
    ledger = applied(scan_four(project))
    change(project)
    after = scan_four(project)
    return plan_incremental(ledger, after), after


def test_templated_include_vars_sets_the_names_of_every_file_it_can_pick(four_roles):
    digests = scan_four(four_roles)
    nginx = next(u for u in digests.units if u.key == "Web servers/nginx")
    assert not nginx.unknown_exports
    # Debian.yml, RedHat.yml and Archlinux.yml all define these two; set_fact and register add theirs
    assert {"__nginx_package", "nginx_conf_dir", "nginx_package", "nginx_listen_port",
            "nginx_conf_stat"} <= nginx.exports


def test_load_balancer_template_edit_reruns_only_the_load_balancer(four_roles):
    plan, after = plan_four(four_roles, lambda p: append(p / "playbooks/roles/haproxy/templates/haproxy.conf.j2",
                                                         "# tuned\n"))
    assert selected(plan) == {"lb-1": ["Load balancer", "Load balancer/haproxy"]}
    assert not plan.gather_facts_for
    lb = next(u for u in after.units if u.key == "Load balancer/haproxy")
    assert lb.hostvars_reads == {"web_port", "inventory_hostname"}
    subset = subset_playbook(plan, after)
    assert [(p.play, p.vms) for p in subset.plays] == [("Load balancer", ("lb-1",))]


def test_load_balancer_reading_a_fact_the_web_role_sets_runs_that_role_too(four_roles):
    replace(four_roles / "playbooks/site.yml", "map('extract', hostvars, 'web_port')",
            "map('extract', hostvars, 'nginx_listen_port')")
    plan, _ = plan_four(four_roles, lambda p: append(p / "playbooks/roles/haproxy/templates/haproxy.conf.j2",
                                                     "# tuned\n"))
    assert set(selected(plan)) == {"lb-1", "web-1", "web-2"}  # the caches set nothing the load balancer reads
    web = {c.unit: c for c in plan.vm("web-1").units}
    assert not web["Web servers/nginx"].dirty
    assert web["Web servers/nginx"].reasons == (
        "sets `nginx_listen_port` read by role haproxy (play Load balancer) on lb-1",)


def test_web_role_change_reruns_the_load_balancer_only_when_it_sets_what_is_read(four_roles):
    edit = lambda p: append(p / "playbooks/roles/nginx/templates/nginx.conf.j2", "# tuned\n")  # noqa: E731
    plan, _ = plan_four(four_roles, edit)
    assert set(selected(plan)) == {"web-1", "web-2"}
    replace(four_roles / "playbooks/site.yml", "map('extract', hostvars, 'web_port')",
            "map('extract', hostvars, 'nginx_listen_port')")
    plan, _ = plan_four(four_roles, edit)
    assert set(selected(plan)) == {"web-1", "web-2", "lb-1"}
    assert plan.vm("lb-1").units[-1].reasons == (
        "reads `nginx_listen_port` of web-1 set by role nginx (play Web servers), which changed",)


@pytest.mark.parametrize("include, why", [
    ("\"{{ my_vars_file }}\"", "`my_vars_file` can name any file"),
    ("\"/etc/{{ ansible_os_family }}.yml\"", "is outside the role"),
    ("\"{{ item }}\"\n  loop: \"{{ files_to_load }}\"", "`files_to_load` can name any file"),
])
def test_include_vars_that_can_name_any_file_still_runs_everything_it_may_feed(four_roles, include, why):
    replace(four_roles / "playbooks/roles/redis/tasks/main.yml",
            "ansible.builtin.include_vars: \"{{ ansible_os_family }}.yml\"", f"ansible.builtin.include_vars: {include}")
    digests = scan_four(four_roles)
    redis = next(u for u in digests.units if u.key == "Caches/redis")
    assert redis.unknown_exports and why in redis.unknown_exports[0]
    plan, _ = plan_four(four_roles, lambda p: append(p / "playbooks/roles/haproxy/templates/haproxy.conf.j2",
                                                     "# tuned\n"))
    assert set(selected(plan)) == {"lb-1", "cache-1"}
    assert "Caches/redis" in plan.selected("cache-1") and "Caches/memcached" not in plan.selected("cache-1")


def test_include_vars_with_first_found_uses_its_candidates(four_roles):
    replace(four_roles / "playbooks/roles/redis/tasks/main.yml",
            "ansible.builtin.include_vars: \"{{ ansible_os_family }}.yml\"",
            "ansible.builtin.include_vars: \"{{ item }}\"\n  with_first_found:\n"
            "    - \"{{ ansible_distribution }}.yml\"\n    - \"{{ ansible_os_family }}.yml\"\n")
    write(four_roles / "playbooks/roles/redis/vars/Ubuntu.yml", "redis_only_on_ubuntu: true\n")
    redis = next(u for u in scan_four(four_roles).units if u.key == "Caches/redis")
    assert not redis.unknown_exports and {"redis_only_on_ubuntu", "__redis_package"} <= redis.exports


def test_a_vault_encrypted_vars_file_leaves_include_vars_unknown(four_roles):
    write(four_roles / "playbooks/roles/memcached/vars/Suse.yml", "$ANSIBLE_VAULT;1.1;AES256\n3132\n")
    memcached = next(u for u in scan_four(four_roles).units if u.key == "Caches/memcached")
    assert memcached.unknown_exports and "Suse.yml cannot be read" in memcached.unknown_exports[0]


@pytest.mark.parametrize("text, reads", [
    ("{{ hostvars[h]['a'] }}", {"a"}),
    ("{{ hostvars[h].b.c }}", {"b"}),
    ("{{ hostvars['web-1'].get('d') }}", {"d"}),
    ("{{ groups.web | map('extract', hostvars, ['e', 'f']) | list }}", {"e"}),
    ("{{ 'web-1' | extract(hostvars, 'g') }}", {"g"}),
    ("{% for h in groups.web %}{{ hostvars[h]['ansible_default_ipv4']['address'] }}{% endfor %}",
     {"ansible_default_ipv4"}),
    ("plain text naming hostvars outside any expression", set()),
    ("{{ hostvars[h][name] }}", None),
    ("{{ hostvars[h] | to_json }}", None),
    ("{{ hostvars | dict2items }}", None),
    ("{{ hostvars[ }}", None),
])
def test_what_a_template_reads_through_hostvars(text, reads):
    from provisioner.incremental.changes import _hostvars_reads, _Scan

    scan = _Scan()
    _hostvars_reads(text, scan)
    assert (None if scan.hostvars_any else scan.hostvars_reads) == reads


def test_a_bare_condition_reading_hostvars_is_an_expression():
    from provisioner.incremental.changes import _hostvars_reads, _Scan

    scan = _Scan()
    _hostvars_reads([{"debug": {"msg": "x"}, "when": "hostvars['db-1'].db_ready | bool"}], scan)
    assert scan.hostvars_reads == {"db_ready"} and not scan.hostvars_any


def test_include_vars_of_a_folder_sets_the_names_of_its_files(four_roles):
    replace(four_roles / "playbooks/roles/redis/tasks/main.yml",
            "ansible.builtin.include_vars: \"{{ ansible_os_family }}.yml\"",
            "ansible.builtin.include_vars:\n    dir: tuning")
    write(four_roles / "playbooks/roles/redis/vars/tuning/memory.yml", "redis_maxmemory_policy: allkeys-lru\n")
    redis = next(u for u in scan_four(four_roles).units if u.key == "Caches/redis")
    assert not redis.unknown_exports and "redis_maxmemory_policy" in redis.exports
