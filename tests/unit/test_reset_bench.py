"""bench/reset_bench.py without VMs: its table (ratio and target, met and missed) and the snapshot time it reads
from `devbox up`'s output. The bench itself runs in the lab."""
from __future__ import annotations

from pathlib import Path

from helpers import load_bench

REPO = Path(__file__).resolve().parents[2]


rb = load_bench("reset_bench")


def test_table_reports_medians_ratio_and_target():
    text = rb.table({"recreate": [1200.0, 1100.0, 1300.0], "reset": [60.0, 50.0, 70.0]}, 5)
    assert "recreate: `devbox destroy --yes` + `devbox up` (5 VMs)" in text
    assert "| 20.0x | met |" in text and "MISSED" not in text   # 1200 / 60
    slow = rb.table({"recreate": [300.0], "reset": [100.0]}, 2)
    assert "| 3.0x | **MISSED** |" in slow


def test_snapshot_seconds_reads_the_note_devbox_up_prints():
    # as machines/snapshots.py keep_converged words it
    note = ("`converged` snapshot taken of web-1, db-1 in 14s (`devbox reset` goes back to it; "
            "`snapshots: {converged: false}` in devbox.yml turns it off)")
    assert rb.snapshot_seconds(f"booted: web-1\n{note}\n") == 14.0
    assert rb.snapshot_seconds("booted: web-1\n") is None
    source = (REPO / "provisioner" / "machines" / "snapshots.py").read_text()
    assert 'snapshot taken of {\', \'.join(run.names)} in {sum(run.seconds.values()):.0f}s' in source


def test_table_says_how_the_samples_were_taken():
    alternating = rb.table({"recreate": [1200.0, 1300.0], "reset": [60.0, 70.0]}, 5)
    assert "Median (min–max) of 2 alternating rounds (recreate, reset)" in alternating
    several = rb.table({"recreate": [1400.0], "reset": [90.0, 80.0, 100.0]}, 5)
    assert "1 round of one recreate then 3 resets (1 recreate and 3 reset samples)" in several
    assert "| 15.6x | met |" in several   # 1400 / median 90
