"""bench/benchlib.py: the alternating sampler, median and spread, ratios and the Markdown tables every bench prints."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import load_bench

REPO = Path(__file__).resolve().parents[2]

bl = load_bench("benchlib")


def test_the_sampler_alternates_a_b_a_b_and_keeps_each_commands_samples_in_order():
    calls = []

    def runner(name):
        def run():
            calls.append(name)
            return f"{name}{calls.count(name)}"
        return run

    samples = bl.alternate([runner("A"), runner("B"), runner("C")], 3)
    assert calls == ["A", "B", "C"] * 3
    assert samples == [["A1", "A2", "A3"], ["B1", "B2", "B3"], ["C1", "C2", "C3"]]
    with pytest.raises(ValueError):
        bl.alternate([runner("A")], 0)


def test_median_spread_and_quartiles():
    s = bl.Spread.of([3.0, 1.0, 2.0, 10.0, 4.0])
    assert (s.n, s.median, s.min, s.max) == (5, 3.0, 1.0, 10.0)
    assert s.iqr == (2.0, 4.0)
    assert s.cell() == "3.00 s (1.00–10.00)"
    even = bl.Spread.of([1, 2, 3, 4])
    assert even.median == 2.5 and even.cell(1) == "2.5 s (1.0–4.0)"
    one = bl.Spread.of([0.5])
    assert one.iqr == (0.5, 0.5) and one.cell() == "0.50 s (1 run)"
    with pytest.raises(ValueError):
        bl.Spread.of([])


def test_the_ratio_is_baseline_over_devbox_on_medians():
    baseline, devbox = bl.Spread.of([10.0, 12.0, 100.0]), bl.Spread.of([4.0, 6.0, 5.0])
    assert bl.ratio(baseline, devbox) == pytest.approx(12.0 / 5.0)   # medians: an outlier does not move it
    assert bl.ratio(6.0, 3.0) == 2.0 and bl.ratio_cell(2.0) == "2.00x"
    assert bl.ratio(None, devbox) is None and bl.ratio(6.0, 0.0) is None and bl.ratio_cell(None) == "-"
    assert "baseline ÷ devbox" in bl.RATIO_NOTE and "above 1 means devbox is faster" in bl.RATIO_NOTE


def test_a_missed_target_prints_missed():
    assert bl.target_cell(False) == "**MISSED**"
    assert bl.target_cell(True) == "met"
    assert bl.target_cell(None) == "-"
    table = bl.markdown_table(["case", "time", "target"], [["one file", "61.6 s", bl.target_cell(False)]])
    assert table.splitlines()[-1] == "| one file | 61.6 s | **MISSED** |"


def test_markdown_tables_as_the_readme_shows_them():
    text = bl.markdown_table(["VMs", "vagrant", "devbox", "ratio"],
                             [[1, "61.0 s (60.1–62.0)", None, "a|b"], [4, "180.0 s (1 run)", "90.0 s", "2.00x"]],
                             title="ready", notes=["ratio = baseline ÷ devbox"])
    assert text.splitlines() == [
        "**ready**",
        "",
        "| VMs | vagrant | devbox | ratio |",
        "|---|---:|---:|---:|",
        "| 1 | 61.0 s (60.1–62.0) | - | a\\|b |",
        "| 4 | 180.0 s (1 run) | 90.0 s | 2.00x |",
        "",
        "ratio = baseline ÷ devbox",
    ]
    assert bl.markdown_table(["a"], []).splitlines() == ["| a |", "|---|"]
    with pytest.raises(ValueError):
        bl.markdown_table(["a", "b"], [["only one"]])


def test_the_machine_line_names_cpus_and_load():
    line = bl.machine_line()
    assert "CPUs" in line and "load average" in line


# --- the benches print their README tables through benchlib ---------------------------------------------

def _bench(name: str):
    return load_bench(name)


def test_plan_bench_warms_up_then_alternates_and_its_tables_flag_a_miss_against_list_only():
    pb = _bench("plan_bench")
    ran = []

    def fake_run(argv):
        ran.append(argv[0])
        return {"devbox": (1.0, 0.9), "list": (2.0, 1.8), "graph": (0.5, 0.4)}[argv[0]]

    measured = pb.measure([["devbox"], ["list"], ["graph"]], 2, run=fake_run)
    assert ran == ["devbox", "list", "graph"] * 3   # one untimed warm-up each, then A B C A B C
    assert [(w.samples, c.samples) for w, c in measured] == [((1.0, 1.0), (0.9, 0.9)), ((2.0, 2.0), (1.8, 1.8)),
                                                             ((0.5, 0.5), (0.4, 0.4))]
    slow = [(bl.Spread.of([3.0, 3.2]), bl.Spread.of([2.0, 2.1])), *measured[1:]]
    text = pb.tables([("generated (100)", measured), ("generated (10,000)", slow)], 2)
    against_list, against_graph = text.split("\n\n**")
    assert "| generated (100) | 1.00 s (1.00–1.00) | 0.90 s (0.90–0.90) | 2.00 s (2.00–2.00) | 1.80 s (1.80–1.80) " \
           "| 2.00x | 2.00x | met |" in against_list
    assert "| generated (10,000) |" in against_list and against_list.count("**MISSED**") == 1
    assert "floor" in against_graph and "MISSED" not in against_graph and "| 0.50x | 0.44x |" in against_graph
    assert text.count(bl.RATIO_NOTE) == 2


def test_plan_bench_holds_a_large_real_inventory_within_1_1x_of_the_parser_and_flags_a_miss():
    pb = _bench("plan_bench")
    spread = bl.Spread.of

    def measured(devbox, graph):   # (wall, CPU) medians of devbox, --list, --graph
        return [(spread([devbox[0]]), spread([devbox[1]])), (spread([9.0]), spread([9.0])),
                (spread([graph[0]]), spread([graph[1]]))]

    rows = [("generated (1,000)", measured((1.0, 1.0), (0.5, 0.5))),                 # no target: the floor only
            ("`real/big/hosts` (361)", measured((1.05, 1.08), (1.0, 1.0)), 1.1),     # within 1.1x on both
            ("`real/slow/hosts` (361)", measured((1.05, 1.2), (1.0, 1.0)), 1.1)]     # CPU 1.2x: missed
    against_graph = pb.tables(rows, 1).split("\n\n**")[1]
    assert "within 1.1x of it, ratio >= 0.909" in against_graph
    assert "| generated (1,000) | 1.00 s (1 run) | 1.00 s (1 run) | 0.50 s (1 run) | 0.50 s (1 run) | 0.50x | 0.50x " \
           "| - |" in against_graph
    assert "| 0.95x | 0.93x | met |" in against_graph and "| 0.95x | 0.83x | **MISSED** |" in against_graph
    assert pb.within(1.1, 1 / 1.1, 1.0) is True and pb.within(1.1, 0.9, 1.0) is False
    assert pb.within(1.1, None, 1.0) is None


def test_plan_bench_plans_each_vendored_inventory_by_its_source_record_and_targets_the_large_ones():
    pb = _bench("plan_bench")
    real = REPO / "tests" / "data" / "inventories" / "real"
    assert pb.inventory_file(real / "usegalaxy-au") == real / "usegalaxy-au" / "hosts"
    assert pb.inventory_file(real / "trellis-wordpress") == real / "trellis-wordpress" / "repo" / "hosts" / "production"
    plain = REPO / "tests" / "data" / "inventories" / "openstack" / "multinode"
    assert pb.inventory_file(plain) == plain
    assert real / "usegalaxy-au" in pb.default_inventories() and pb.default_inventories()[0] == plain
    assert pb.graph_target(real / "usegalaxy-au" / "hosts", 107) == 1.1
    assert pb.graph_target(real / "usegalaxy-eu" / "hosts", 33) is None      # too small for the target
    assert pb.graph_target(plain, 361) is None                               # not a vendored production inventory


def test_provision_bench_table_flags_each_missed_target():
    pv = _bench("provision_bench")
    ok = pv.table({"full": [560.0, 580.0, 570.0], "one file": [61.0, 65.0, 60.0], "no change": [0.7, 0.8, 0.6]},
                  "roles/webapp/templates/webapp.env.j2")
    assert "| 570.0 s (560.0–580.0) | 1.0x | - |" in ok and "| 61.0 s (60.0–65.0) | 9.3x | met |" in ok
    assert "| 0.70 s (0.60–0.80) | 814.3x | met |" in ok and "MISSED" not in ok
    missed = pv.table({"full": [100.0], "one file": [30.0], "no change": [3.5]}, "x.j2")
    assert missed.count("**MISSED**") == 2


# --- one benchlib per process, whichever test loads a bench first ---------------------------------------------

ORDERS = {"speed bench first": ["speed_bench", "benchlib", "plan_bench"],
          "benchlib first": ["benchlib", "plan_bench", "speed_bench"],
          "plan bench first": ["plan_bench", "speed_bench", "benchlib"]}
CHECK = """
import sys
from helpers import load_bench
loaded = {name: load_bench(name) for name in sys.argv[1:]}
bl, pb, sb = loaded["benchlib"], loaded["plan_bench"], loaded["speed_bench"]
assert pb.Spread is bl.Spread is sb.Spread, "two copies of benchlib"
assert load_bench("plan_bench") is pb, "plan_bench loaded twice"
print(pb.ratio(bl.Spread.of([9.0]), bl.Spread.of([1.0])))
"""


@pytest.mark.parametrize("order", ORDERS.values(), ids=ORDERS.keys())
def test_benches_share_one_benchlib_in_any_load_order(order):
    """In a fresh interpreter (as a pytest process running the bench tests in this order): a Spread made through
    one bench is a Spread to the others, so plan_bench's tables take benchlib's Spreads."""
    result = subprocess.run([sys.executable, "-c", CHECK, *order], cwd=REPO, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{REPO}:{REPO / 'tests'}"}, timeout=120)
    assert (result.returncode, result.stdout.strip()) == (0, "9.0"), result.stderr


def test_this_process_has_one_copy_of_each_bench():
    assert load_bench("plan_bench").Spread is bl.Spread is load_bench("speed_bench").Spread
    assert load_bench("provision_bench") is load_bench("provision_bench")
