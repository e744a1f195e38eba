"""Every command of devbox, registered on the root group here and nowhere else."""
from __future__ import annotations

from provisioner.cli.config import config
from provisioner.cli.environments import trust
from provisioner.cli.lab import box, integration, lab
from provisioner.cli.machines import destroy, doctor, halt, idempotence, provision, ssh, status, up
from provisioner.cli.main import main
from provisioner.cli.names import hosts
from provisioner.cli.parity import parity
from provisioner.cli.plan import init, plan
from provisioner.cli.report import report
from provisioner.cli.snapshots import reset, snapshot

COMMANDS = (plan, init, up, provision, idempotence, status, hosts, ssh, halt, destroy, doctor, snapshot, reset, trust,
            parity, box, lab, integration, report, config)

for command in COMMANDS:
    main.add_command(command)
