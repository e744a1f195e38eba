"""Helpers shared by the unit and the end-to-end tests (importable as ``helpers``: setup.cfg puts tests/ on the path).

- fixture projects: ``copy_project`` (a fresh copy of a template project, e.g. a module-scoped one),
  ``copy_reference_project`` (this repository's devbox.yml, Vagrantfile.j2 and playbooks/),
  ``INCREMENTAL`` (tests/data/incremental: ``project/`` with playbooks and inventory, ``e2e/`` with a production
  inventory and devbox.yml) and ``add_cache_role`` (a new role in its db play);
- edits the way a developer makes them: ``append``, ``write`` and ``replace`` (which fails when the text to
  replace is not there, so an edit cannot silently change nothing);
- git: ``git`` (one command, its output), ``git_commit`` (init, add, commit), ``git_head``;
- ``load_bench``: a script of bench/ imported as a module, for its tests without VMs;
- ``addressed_inventory``: a production inventory whose addresses are set in vars files, group vars and host
  names (``ADDRESSED`` says where), for the checks that no production address reaches what devbox writes.

Nothing here imports devbox itself: the e2e tier uses these too, and it runs the real CLI instead.
"""
from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
INCREMENTAL = TESTS / "data" / "incremental"

# a throwaway identity for commits in test repositories (nothing reads it)
AUTHOR = ("t", "t@example.com")


# --- fixture projects ------------------------------------------------------------------------------------------

def copy_project(source: Path, dest: Path) -> Path:
    """A fresh copy of a fixture or template project at ``dest`` (links copied as links); returns ``dest``."""
    shutil.copytree(source, dest, symlinks=True)
    return dest


def copy_reference_project(dest: Path) -> Path:
    """This repository's reference service (devbox.yml, Vagrantfile.j2, playbooks/) into ``dest``, without the
    checkout's own .devbox/ or retry files; returns ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("devbox.yml", "Vagrantfile.j2"):
        shutil.copyfile(REPO / name, dest / name)
    shutil.copytree(REPO / "playbooks", dest / "playbooks", ignore=shutil.ignore_patterns(".devbox", "*.retry"))
    return dest


CACHE_ROLE_TASKS = ("- name: cache marker\n  ansible.builtin.copy:\n    content: \"{{ db_name }} cache\\n\"\n"
                    "    dest: \"{{ out_dir }}/{{ inventory_hostname }}/cache\"\n    mode: \"0644\"\n")


def add_cache_role(project: Path, tasks: str = CACHE_ROLE_TASKS) -> None:
    """In a copy of INCREMENTAL's playbooks: a new role ``cache`` with these tasks, listed after ``db`` in the db
    play."""
    append(project / "playbooks/roles/cache/tasks/main.yml", tasks)
    replace(project / "playbooks/site.yml", "    - role: db\n", "    - role: db\n    - cache\n")


# --- edits -----------------------------------------------------------------------------------------------------

def no_converged_snapshot(project: Path) -> None:
    """Turn the automatic `converged` snapshot off in the project's devbox.yml: tests of other features then
    need not allow the fake Vagrant's snapshot calls (test_snapshots.py tests it)."""
    append(project / "devbox.yml", "snapshots: {converged: false}\n")


def write(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, making its folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def append(path: Path, text: str) -> None:
    """Add ``text`` at the end of ``path`` (a new file if there is none), making its folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((path.read_text() if path.exists() else "") + text)


def replace(path: Path, old: str, new: str, count: int = -1) -> None:
    """Replace ``old`` by ``new`` in ``path`` (the first ``count`` times; every time by default). Fails if ``old``
    is not in the file: an edit that changes nothing would make a test pass for the wrong reason."""
    text = path.read_text()
    if old not in text:
        raise AssertionError(f"{path}: {old!r} not found, the edit would change nothing")
    path.write_text(text.replace(old, new, count))


# --- git -------------------------------------------------------------------------------------------------------

def git(repo: Path, *args: str) -> str:
    """Run ``git -C repo args...``; fails on a non-zero exit; returns its standard output."""
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def git_commit(repo: Path, *paths: str, message: str, author: tuple[str, str] = AUTHOR) -> None:
    """Make ``repo`` a git repository (if it is not one) and commit ``paths`` (e.g. ``"."``) as ``author``
    (name, email)."""
    identity = ("-c", f"user.name={author[0]}", "-c", f"user.email={author[1]}")
    git(repo, "init", "-q")
    git(repo, *identity, "add", *paths)
    git(repo, *identity, "commit", "-q", "-m", message)


def git_head(repo: Path) -> str:
    """The checked-out commit, abbreviated to 12 characters (as devbox records revisions)."""
    return git(repo, "rev-parse", "--short=12", "HEAD").strip()


# --- CLI results -----------------------------------------------------------------------------------------------

def assert_handled(result, code: int) -> None:
    """A click ``CliRunner`` result ended with exit ``code`` the way devbox means it to, not by a crash.

    CliRunner swallows exceptions: a crash also gives exit 1, with empty output and no "Traceback" in it. A handled
    error (and any non-zero exit devbox chooses) leaves ``SystemExit``; a crash leaves the exception that escaped,
    shown here with its traceback. Exit 0 leaves no exception at all.
    """
    import traceback

    exc = result.exception
    crash = "" if exc is None or isinstance(exc, SystemExit) else "".join(
        traceback.format_exception(type(exc), exc, exc.__traceback__))
    assert not crash, f"devbox crashed (exit {result.exit_code}):\n{crash}\noutput:\n{result.output}"
    assert result.exit_code == code, f"exit {result.exit_code} instead of {code}; output:\n{result.output}"
    if code == 0:
        assert exc is None
    else:
        assert isinstance(exc, SystemExit) and exc.code == code


# --- bench/ ----------------------------------------------------------------------------------------------------

def load_bench(name: str):
    """bench/NAME.py as the module ``NAME``, with bench/ on the path as when it runs (benches import benchlib and
    each other).

    Imported through the import system, so a bench and ``benchlib`` are each one module per test process whichever
    test loads them first: a second copy of benchlib (as executing the file again gave) has classes of its own,
    and a ``Spread`` made by one copy is not a ``Spread`` to the other (``isinstance`` fails across them)."""
    bench = REPO / "bench"
    if str(bench) not in sys.path:
        sys.path.insert(0, str(bench))
    module = importlib.import_module(name)
    if Path(module.__file__).resolve() != (bench / f"{name}.py").resolve():
        raise ImportError(f"`{name}` was imported from {module.__file__}, not from {bench}: another module of that "
                          "name is on the path first")
    return module


# Where each production address of ``addressed_inventory`` is set; all but the IP-named host's lie in devbox's
# default development network, where the VMs' addresses (from .11) would be the same.
ADDRESSED = {"192.168.56.11": "host_vars/web1.yml beside the inventory",
             "192.168.56.12": "group_vars/db.yml beside the inventory",
             "192.168.56.13": "[cache:vars] in the inventory file",
             "192.168.56.14": "host_vars/web2.yml beside the playbook",
             "10.20.30.40": "the host's own name"}


def addressed_inventory(root: Path) -> tuple[Path, Path]:
    """A production inventory (``root``/production/hosts.ini) whose hosts' addresses are set everywhere Ansible
    reads them but inline (see ``ADDRESSED``), and a project folder (``root``/project) with the playbook's
    host_vars beside playbooks/site.yml. Returns (inventory, project)."""
    production, project = root / "production", root / "project"
    for folder in (production / "host_vars", production / "group_vars", project / "playbooks" / "host_vars"):
        folder.mkdir(parents=True)
    inventory = production / "hosts.ini"
    inventory.write_text("[web]\nweb1\nweb2\n\n[db]\ndb1\n\n[cache]\ncache1\n\n[cache:vars]\n"
                         "ansible_host=192.168.56.13\n\n[monitoring]\n10.20.30.40\n")
    (production / "host_vars" / "web1.yml").write_text("---\nansible_host: 192.168.56.11\n")
    (production / "group_vars" / "db.yml").write_text("---\nansible_host: 192.168.56.12\npostgres_port: 5432\n")
    (project / "playbooks" / "host_vars" / "web2.yml").write_text("ansible_host: 192.168.56.14\n")
    (project / "playbooks" / "site.yml").write_text("- hosts: all\n  tasks: []\n")
    return inventory, project
