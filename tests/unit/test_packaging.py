"""devbox as a user installs it: a wheel with its templates and schema as package data, found wherever it is
installed (``pip install --user``, ``--prefix``, ``--target``), without the source tree; and the files a
release carries (LICENSE)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from provisioner.config.editor_schema import schema_text
from provisioner.plan.render import DEFAULT_TEMPLATE, shipped_template

REPO = Path(__file__).resolve().parents[2]
INVENTORY = REPO / "tests" / "data" / "inventories" / "webapp" / "hosts.ini"
PACKAGING_INPUTS = ("setup.cfg", "pyproject.toml", "README.md", "LICENSE")


@pytest.mark.parametrize("top_level, shipped", [("Vagrantfile.j2", "Vagrantfile.j2"),
                                                ("templates/devbox.yml.j2", "devbox.yml.j2")])
def test_top_level_templates_are_the_shipped_ones(top_level, shipped):
    """The reference service keeps its own copies at the top level; they must be devbox's own, byte for byte
    (edit provisioner/templates/ and copy)."""
    assert (REPO / top_level).read_bytes() == shipped_template(shipped).read_bytes(), \
        f"{top_level} differs from provisioner/templates/{shipped}: copy the canonical one over it"


def test_license_is_mit_as_the_metadata_says():
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License") and "devbox contributors" in text
    assert "license = MIT" in (REPO / "setup.cfg").read_text()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """devbox's wheel, built from a copy of the packaging inputs (the checkout gets no build/ or egg-info)."""
    src = tmp_path_factory.mktemp("src")
    for name in PACKAGING_INPUTS:
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "provisioner", src / "provisioner", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    pip(["wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist), str(src)])
    (found,) = dist.glob("devbox-*.whl")
    return found


def pip(args: list[str]) -> None:
    before = _installed_devbox()
    result = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _installed_devbox() == before, "pip changed the devbox installed in the test's own environment"


def _installed_devbox() -> str | None:
    """The console script of the environment running the tests (the lab tier runs it after this tier)."""
    script = Path(sys.executable).parent / "devbox"
    return script.read_text() if script.exists() else None


def installed_env(site_packages: Path) -> dict[str, str]:
    """Only the installed copy of devbox on the path (the shared dependencies come from this Python's own
    site-packages, which the editable install's finder comes after)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    return {**env, "PYTHONPATH": str(site_packages), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def test_wheel_carries_templates_schema_and_license(wheel):
    import zipfile
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"provisioner/templates/Vagrantfile.j2", "provisioner/templates/devbox.yml.j2",
            "provisioner/templates/parity_report.html.j2", "provisioner/templates/report.html.j2",
            "provisioner/config/devbox.schema.json",
            "provisioner/data/parity_facts.yml"} <= names
    assert any(n.endswith(".dist-info/LICENSE") for n in names)


def test_installed_with_prefix_runs_init_without_the_source_tree(wheel, tmp_path):
    """`pip install --prefix` (what `--user` is, with another prefix): the old lookup under sys.prefix failed
    here with a raw TemplateNotFound."""
    prefix = tmp_path / "prefix"
    # --ignore-installed: without it pip uninstalls the devbox of the environment it runs in (the test's own)
    pip(["install", "--no-deps", "--no-index", "--ignore-installed", "--prefix", str(prefix), str(wheel)])
    site = Path(sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)}))
    devbox = prefix / "bin" / "devbox"
    project = tmp_path / "project"
    (project / "prod").mkdir(parents=True)
    shutil.copy(INVENTORY, project / "prod" / "hosts.ini")
    env = installed_env(site)

    where = subprocess.run([sys.executable, "-c", "import provisioner.plan.render as r; print(r.__file__); "
                            "print(r.DEFAULT_TEMPLATE)"], cwd=project, env=env, capture_output=True, text=True)
    module, template = where.stdout.split()
    assert module.startswith(str(site)) and template.startswith(str(site)), where.stdout + where.stderr

    def run(*args):
        result = subprocess.run([str(devbox), *args], cwd=project, env=env, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stdout + result.stderr
        return result

    assert "web-1" in run("plan", "--inventory", "prod").stdout
    run("init", "--inventory", "prod")
    assert "config.vm.box = 'devbox/debian12'" in (project / "Vagrantfile").read_text()
    config = (project / "devbox.yml").read_text()
    assert config.startswith("# yaml-language-server: $schema=.devbox/devbox.schema.json\n")
    assert "box: devbox/debian12" in config
    assert (project / ".devbox" / "devbox.schema.json").read_text() == schema_text()
    assert run("config", "schema").stdout == schema_text()


def test_installed_with_target_renders_the_shipped_template(wheel, tmp_path):
    target = tmp_path / "target"
    pip(["install", "--no-deps", "--no-index", "--target", str(target), str(wheel)])
    code = ("from provisioner.plan.render import DEFAULT_TEMPLATE, render_template\n"
            "print(DEFAULT_TEMPLATE)\n"
            "print(render_template(DEFAULT_TEMPLATE, {'box': 'b', 'provider': 'libvirt', 'libvirt_uri': None, "
            "'machines': []}))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=installed_env(target),
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(str(target / "provisioner" / "templates" / "Vagrantfile.j2"))
    assert "config.vm.box = 'b'" in result.stdout


def test_source_checkout_uses_the_package_copy():
    assert DEFAULT_TEMPLATE == REPO / "provisioner" / "templates" / "Vagrantfile.j2"
