"""`devbox doctor` with `hypervisors:`: each hypervisor answers over its URI, and this machine routes each
hypervisor's subnet to it; the missing one is named with the fix. Fakes subclass the real probe interface."""
from __future__ import annotations

from pathlib import Path

from provisioner.adapters.hypervisor_probe import Answer, Route, parse_routes
from provisioner.config.schema import parse_config
from provisioner.machines import doctor
from provisioner.plan.placement import HypervisorUse

from fakes import FakeHypervisorProbe

KEY = "keyfile=/keys/hv&known_hosts=/keys/kh"
HV1 = f"qemu+libssh://root@10.250.1.2/system?{KEY}"
HV2 = f"qemu+libssh://root@hv2.lab/system?{KEY}"
VERSION = Answer(True, "Running hypervisor: QEMU 7.2.0")


def setup(*extra):
    config = parse_config({"hypervisors": [{"name": "hv1", "uri": HV1, "memory_mb": 2048, "cpus": 2},
                                           {"name": "hv2", "uri": HV2, "memory_mb": 2048, "cpus": 2}, *extra]},
                          Path("devbox.yml"))
    uses = (HypervisorUse("hv1", HV1, "10.231.1.0/24", 2048, 2, 512, ("web-1",)),
            HypervisorUse("hv2", HV2, "10.231.2.0/24", 2048, 2, 512, ("web-2",)))
    return config.hypervisors, uses


def by_name(checks):
    return {c.name: c for c in checks}


def test_both_hypervisors_answer_and_both_routes_exist():
    hypervisors, uses = setup()
    probe = FakeHypervisorProbe({HV1: VERSION, HV2: VERSION},
                                {"10.231.1.11": [Route("10.231.1.0/24", "10.250.1.2", "dbx1c")],
                                 "10.231.2.11": [Route("10.231.2.0/24", "10.250.2.2", "dbx2c")]},
                                {"10.250.1.2": "10.250.1.2", "hv2.lab": "10.250.2.2"})
    checks = by_name(doctor.hypervisor_checks(hypervisors, uses, probe))
    assert [c.status for c in checks.values()] == ["ok"] * 4
    assert "QEMU 7.2.0" in checks["hypervisor hv1"].detail
    assert checks["route to hv2"].detail == "10.231.2.0/24 via 10.250.2.2"


def test_the_missing_route_is_named_with_the_command_that_adds_it():
    hypervisors, uses = setup()
    probe = FakeHypervisorProbe({HV1: VERSION, HV2: VERSION},
                                {"10.231.1.11": [Route("10.231.1.0/24", "10.250.1.2", "dbx1c")], "10.231.2.11": []},
                                {"10.250.1.2": "10.250.1.2", "hv2.lab": "10.250.2.2"})
    checks = by_name(doctor.hypervisor_checks(hypervisors, uses, probe))
    missing = checks["route to hv2"]
    assert missing.status == "fail" and "no route to 10.231.2.0/24" in missing.detail
    assert "`ip route add 10.231.2.0/24 via 10.250.2.2`" in missing.hint
    assert checks["route to hv1"].status == "ok"


def test_a_route_through_another_gateway_is_a_failure():
    hypervisors, uses = setup()
    probe = FakeHypervisorProbe({HV1: VERSION, HV2: VERSION},
                                {"10.231.1.11": [Route("10.231.0.0/16", "10.250.2.2", "dbx2c")],
                                 "10.231.2.11": [Route("10.231.0.0/16", "10.250.2.2", "dbx2c")]},
                                {"10.250.1.2": "10.250.1.2", "hv2.lab": "10.250.2.2"})
    checks = by_name(doctor.hypervisor_checks(hypervisors, uses, probe))
    assert checks["route to hv1"].status == "fail" and "ip route replace 10.231.1.0/24 via 10.250.1.2" in \
        checks["route to hv1"].hint
    assert checks["route to hv2"].status == "ok"


def test_a_hypervisor_that_does_not_answer_is_named_with_its_error_and_a_host_key_hint():
    hypervisors, uses = setup()
    probe = FakeHypervisorProbe({HV1: Answer(False, "error: Cannot recv data: Host key verification failed."),
                                 HV2: Answer(False, "error: Connection refused")},
                                {"10.231.1.11": [], "10.231.2.11": []},
                                {"10.250.1.2": "10.250.1.2", "hv2.lab": "10.250.2.2"})
    checks = by_name(doctor.hypervisor_checks(hypervisors, uses, probe))
    assert checks["hypervisor hv1"].status == "fail" and "ssh-keyscan 10.250.1.2" in checks["hypervisor hv1"].hint
    assert checks["hypervisor hv2"].status == "fail" and "ssh root@hv2.lab" in checks["hypervisor hv2"].hint
    assert HV2 in checks["hypervisor hv2"].detail


def test_known_hosts_in_an_openssh_uri_is_a_warning_and_a_local_hypervisor_needs_no_route_yet():
    openssh = f"qemu+ssh://root@hv3.lab/system?{KEY}"
    hypervisors, uses = setup({"name": "hv3", "uri": openssh, "memory_mb": 512, "cpus": 1},
                              {"name": "here", "uri": "qemu:///system", "memory_mb": 512, "cpus": 1})
    uses = uses + (HypervisorUse("hv3", openssh, "10.231.3.0/24", 512, 1, 0, ()),
                   HypervisorUse("here", "qemu:///system", "10.231.4.0/24", 512, 1, 0, ()))
    probe = FakeHypervisorProbe({HV1: VERSION, HV2: VERSION, openssh: VERSION, "qemu:///system": VERSION},
                                {"10.231.1.11": [Route("10.231.1.0/24", "10.250.1.2", None)],
                                 "10.231.2.11": [Route("10.231.2.0/24", "10.250.2.2", None)],
                                 "10.231.3.11": [Route("10.231.3.0/24", "10.250.3.2", None)],
                                 "10.231.4.11": []},
                                {"10.250.1.2": "10.250.1.2", "hv2.lab": "10.250.2.2", "hv3.lab": "10.250.3.2"})
    checks = by_name(doctor.hypervisor_checks(hypervisors, uses, probe))
    assert checks["hypervisor hv3"].status == "warn" and "qemu+libssh" in checks["hypervisor hv3"].hint
    assert checks["route to here"].status == "warn" and "devbox-here" in checks["route to here"].hint


def test_a_hypervisor_the_plan_does_not_list_yet_says_run_init():
    hypervisors, uses = setup()
    probe = FakeHypervisorProbe({HV1: VERSION, HV2: VERSION}, {"10.231.1.11": []}, {"10.250.1.2": "10.250.1.2"})
    checks = by_name(doctor.hypervisor_checks(hypervisors, uses[:1], probe))
    assert checks["route to hv2"].status == "warn" and "devbox init" in checks["route to hv2"].hint


def test_route_parsing_of_real_ip_output_leaves_out_the_default_route():
    text = ("default via 10.0.2.2 dev eth0 proto dhcp src 10.0.2.15 metric 100 \n"
            "10.231.0.0/16 via 10.250.1.2 dev dbx1c \n"
            "10.231.2.0/24 dev virbr1 proto kernel scope link src 10.231.2.1 linkdown \n")
    assert parse_routes(text) == [Route("10.231.0.0/16", "10.250.1.2", "dbx1c"),
                                  Route("10.231.2.0/24", None, "virbr1")]
