"""Import hygiene over every module of the package: each imports alone in a fresh interpreter, no import runs
back up (no cycle between modules, function-local and TYPE_CHECKING imports included), and the layers keep
their dependencies: cli -> app -> workflows -> project/config -> core and adapters."""
from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import provisioner

PACKAGE = Path(provisioner.__file__).resolve().parent
MODULES = sorted(m.name for m in pkgutil.walk_packages([str(PACKAGE)], prefix="provisioner."))

# What a layer may not load, checked on what importing it really loads (sys.modules in a fresh interpreter).
ADAPTER_MODULES = ("provisioner.adapters.vagrant_driver", "provisioner.adapters.playbook_runner",
                   "provisioner.adapters.ssh_probe", "provisioner.adapters.hypervisor_probe")
THIRD_PARTY_ADAPTED = ("vagrant", "ansible_runner", "paramiko")
UI = ("click", "rich")
CORE = {
    # plan: reading production and deriving the VMs
    "provisioner.plan.inventory": UI + ADAPTER_MODULES + THIRD_PARTY_ADAPTED,
    "provisioner.plan.topology": UI + ADAPTER_MODULES + THIRD_PARTY_ADAPTED,
    "provisioner.plan.hostvars": UI + ADAPTER_MODULES + THIRD_PARTY_ADAPTED,
    "provisioner.plan.render": UI + ADAPTER_MODULES + THIRD_PARTY_ADAPTED,
    "provisioner.plan.shares": UI + ADAPTER_MODULES + THIRD_PARTY_ADAPTED,
    "provisioner.plan.devinventory": UI + ADAPTER_MODULES + THIRD_PARTY_ADAPTED,
    "provisioner.plan.placement": UI + ADAPTER_MODULES + THIRD_PARTY_ADAPTED,
    "provisioner.config.entries": UI + ADAPTER_MODULES + THIRD_PARTY_ADAPTED + ("ansible", "yaml"),
    "provisioner.config.hypervisors": UI + ADAPTER_MODULES + THIRD_PARTY_ADAPTED,
    "provisioner.config.schema": UI + ADAPTER_MODULES + THIRD_PARTY_ADAPTED,
    # incremental provisioning's planner
    "provisioner.incremental.changes": UI + ADAPTER_MODULES + THIRD_PARTY_ADAPTED,
    "provisioner.incremental.subset": UI + ADAPTER_MODULES + THIRD_PARTY_ADAPTED,
    "provisioner.incremental.ledger": UI + ADAPTER_MODULES + THIRD_PARTY_ADAPTED,
    "provisioner.incremental.reprovision": UI + ADAPTER_MODULES + THIRD_PARTY_ADAPTED,
    # parity's comparison, static scan and report (not even Ansible itself)
    "provisioner.parity.compare": UI + ADAPTER_MODULES + THIRD_PARTY_ADAPTED + ("ansible",),
    "provisioner.parity.scan": UI + ADAPTER_MODULES + THIRD_PARTY_ADAPTED + ("ansible",),
    "provisioner.parity.report": UI + ADAPTER_MODULES + THIRD_PARTY_ADAPTED + ("ansible",),
    # the report's model, picture and page
    "provisioner.report.model": UI + ADAPTER_MODULES + THIRD_PARTY_ADAPTED + ("ansible",),
    "provisioner.report.svg": UI + ADAPTER_MODULES + THIRD_PARTY_ADAPTED + ("ansible",),
    "provisioner.report.render": UI + ADAPTER_MODULES + THIRD_PARTY_ADAPTED + ("ansible",),
    # converged images: what an image is for, the catalogs, the choice per VM
    "provisioner.images.catalog": UI + ADAPTER_MODULES + THIRD_PARTY_ADAPTED + ("ansible",),
}

# Which packages of devbox each part may import (statically, anywhere in the file): the layers, top to bottom.
BASE = {"provisioner", "provisioner.errors", "provisioner.fsutil", "provisioner.safeyaml"}
ALLOWED = {
    "provisioner.cli": None,  # the top: anything
    "provisioner.app": {"adapters", "config", "plan", "project", "machines", "incremental", "environments",
                        "parity", "lab", "playbook", "report"},
    # the team's page: stamps through the environment rails, the last parity result, the plan
    "provisioner.report": {"adapters", "config", "plan", "project", "environments", "parity"},
    "provisioner.machines": {"adapters", "config", "plan", "project", "incremental", "environments", "playbook"},
    "provisioner.parity": {"adapters", "config", "plan", "project", "incremental", "environments", "machines",
                           "playbook"},
    "provisioner.lab": {"adapters", "config", "environments"},
    # converged images: the pure catalog, box files through qemu-img and vagrant (process), the reset script;
    # the VM flow that uses them (machines, app) sits above
    "provisioner.images": {"adapters"},
    "provisioner.environments": {"adapters", "config", "plan", "project", "playbook"},
    "provisioner.incremental": {"adapters", "config", "project", "playbook"},
    "provisioner.plan": {"adapters", "config", "project", "playbook"},
    "provisioner.project": {"adapters", "config"},
    "provisioner.config": set(),
    "provisioner.playbook": set(),
    "provisioner.adapters": set(),
}


def _module_file(name: str) -> Path:
    rel = Path(*name.split(".")[1:])
    package = PACKAGE / rel / "__init__.py"
    return package if package.exists() else (PACKAGE / rel).with_suffix(".py")


def imports_of(name: str) -> set[str]:
    """Every devbox module ``name`` imports, wherever in the file the import stands."""
    found = set()
    tree = ast.parse(_module_file(name).read_text(encoding="utf-8"))
    package = name if _module_file(name).name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # `from provisioner.x import y`: y is a module when there is one of that name
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        found.update(t for t in targets if t == "provisioner" or t.startswith("provisioner."))
    found.discard(name)
    return {t for t in found if t in MODULES or t == "provisioner"}


def _part(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2])


def test_every_module_is_found():
    assert len(MODULES) > 40
    assert "provisioner.cli" in MODULES and "provisioner.machines.lifecycle" in MODULES


def test_no_import_cycle_between_modules():
    graph = {m: imports_of(m) - {"provisioner"} for m in MODULES}
    # Tarjan's strongly connected components: any component of more than one module is a cycle
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10000)
    for m in MODULES:
        if m not in index:
            visit(m)
    assert cycles == []


def test_each_part_imports_only_the_layers_below_it():
    wrong = []
    for m in MODULES:
        part = _part(m)
        if part in BASE:
            allowed_parts = set()
        else:
            allowed = ALLOWED[part]
            if allowed is None:
                continue
            allowed_parts = {f"provisioner.{p}" for p in allowed}
        for target in imports_of(m):
            tpart = _part(target)
            if tpart in BASE or tpart == part or tpart in allowed_parts:
                continue
            wrong.append(f"{m} imports {target}")
    assert wrong == []


def test_nothing_below_the_command_line_imports_it_or_the_app():
    up = [f"{m} imports {t}" for m in MODULES if _part(m) not in ("provisioner.cli",)
          for t in imports_of(m) if _part(t) in ("provisioner.cli", "provisioner.app") and _part(m) != _part(t)]
    assert up == []


PROBE = ("import importlib, json, sys; importlib.import_module(sys.argv[1]); "
         "print(json.dumps(sorted(m for m in sys.modules)))")


def _load_alone(name: str) -> tuple[str, int, str, str]:
    proc = subprocess.run([sys.executable, "-c", PROBE, name], capture_output=True, text=True, timeout=120)
    return name, proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def loaded_alone() -> dict[str, tuple[int, str, str]]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return {name: (rc, out, err) for name, rc, out, err in pool.map(_load_alone, MODULES)}


def test_every_module_imports_alone_in_a_fresh_interpreter(loaded_alone):
    failed = {name: err.strip().splitlines()[-1:] for name, (rc, _out, err) in loaded_alone.items() if rc != 0}
    assert failed == {}


@pytest.mark.parametrize("module", sorted(CORE))
def test_core_modules_load_neither_the_ui_nor_the_adapters(loaded_alone, module):
    rc, out, err = loaded_alone[module]
    assert rc == 0, err
    loaded = json.loads(out)
    bad = [m for m in loaded for forbidden in CORE[module] if m == forbidden or m.startswith(forbidden + ".")]
    assert bad == []
