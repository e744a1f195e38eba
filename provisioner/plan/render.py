"""Rendering the Vagrantfile from ``Vagrantfile.j2`` and installing it safely.

The template is strict (a missing variable is an error naming it, never an empty string) and not
HTML-escaped (it is Ruby). Installing writes atomically, lets Vagrant validate the result, and puts the
previous Vagrantfile back if Vagrant rejects the new one.
"""
from __future__ import annotations

import importlib.resources
import ipaddress
import os
import shlex
from pathlib import Path
from typing import Callable

import jinja2

from provisioner.config.hypervisors import remote_parts
from provisioner.config.schema import Config
from provisioner.errors import RenderError
from provisioner.fsutil import atomic_write
from provisioner.plan.shares import resolve_shares
from provisioner.plan.topology import Topology, summarize_names

TEMPLATE_NAME = "Vagrantfile.j2"


def shipped_template(name: str) -> Path:
    """One of the templates devbox ships as package data (``provisioner/templates/``), wherever devbox is
    installed (site-packages, ``--user``, ``--prefix``, ``--target``, a source checkout)."""
    resource = importlib.resources.files("provisioner") / "templates" / name
    # pip and every installer unpack packages into folders, so the resource is a real file (Jinja's loader and
    # the error messages need its path); a zipped copy of devbox would not have one.
    return Path(str(resource))


# The template shipped with devbox (a project may keep its own copy, see template_for).
DEFAULT_TEMPLATE = shipped_template(TEMPLATE_NAME)


def template_for(project_dir: Path) -> Path:
    """The project's own ``Vagrantfile.j2`` if it has one, else the one devbox ships."""
    own = Path(project_dir) / TEMPLATE_NAME
    return own if own.is_file() else DEFAULT_TEMPLATE


def ruby_string(value: object) -> str:
    """A Ruby single-quoted literal: no interpolation, only backslash and quote need escaping."""
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def comment_text(value: object) -> str:
    """Text safe inside a one-line comment (Ruby or YAML): control characters and line separators escaped,
    so nothing after them can become code or a key."""
    return "".join(ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
                   for ch in str(value))


def make_environment(template_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(template_dir)), undefined=jinja2.StrictUndefined,
                             autoescape=False, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["ruby"] = ruby_string
    env.filters["comment"] = comment_text
    return env


def vagrantfile_context(topology: Topology, config: Config, project_dir: Path | None = None) -> dict:
    """What the template sees. ``project_dir`` (the Vagrantfile's folder; default: devbox.yml's) is where the
    shared folders' relative host paths start."""
    if project_dir is None:
        project_dir = config.path.parent if config.path else Path.cwd()
    shares = resolve_shares(config, project_dir, topology.machines)
    return {
        "box": config.box,
        "provider": config.provider,
        "libvirt_uri": config.libvirt_uri,
        "machines": [{"name": m.name, "hostname": m.hostname, "memory": m.memory, "cpus": m.cpus,
                      "address": m.address, "represents": list(m.represents), "groups": list(m.groups),
                      "summary": summarize_names(m.represents),
                      "shares": [s.to_json() for s in shares[m.name]],
                      "shared_memory": any(s.mechanism == "virtiofs" for s in shares[m.name]),
                      "hypervisor": hypervisor_context(m.hypervisor, topology, config)}
                     for m in topology.machines],
    }


def hypervisor_context(name: str | None, topology: Topology, config: Config) -> dict | None:
    """What the Vagrantfile says of a VM's hypervisor (None: no `hypervisors:` in devbox.yml)."""
    if name is None:
        return None
    use = next(h for h in topology.hypervisors if h.name == name)
    listed = next((h for h in config.hypervisors if h.name == name), None)
    known_hosts = listed.known_hosts if listed else None
    return {"name": name, "uri": use.uri, "network": use.network_name,
            "netmask": str(ipaddress.IPv4Network(use.subnet).netmask),
            "proxy_command": jump_command(use.uri, known_hosts)}


def jump_command(uri: str, known_hosts: str | None) -> str | None:
    """vagrant-libvirt's proxy command for reaching a VM through its hypervisor, with the hypervisor's host key
    pinned (vagrant-libvirt's own default trusts whatever key ~/.ssh/known_hosts has, or none). None for a local
    URI, or when no known_hosts file is given (the URI's ``known_hosts`` parameter or devbox.yml's)."""
    remote = remote_parts(uri)
    if remote is None:
        return None
    pinned = known_hosts or remote.known_hosts
    if not pinned:
        return None
    argv = ["ssh", remote.host]
    if remote.user:
        argv += ["-l", remote.user]
    if remote.keyfile:
        argv += ["-i", remote.keyfile, "-o", "IdentitiesOnly=yes"]
    argv += ["-o", f"UserKnownHostsFile={pinned}", "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
             "-W", "%h:%p"]
    return " ".join(shlex.quote(a) for a in argv)


def render_vagrantfile(topology: Topology, config: Config, template: Path, project_dir: Path | None = None) -> str:
    return render_template(template, vagrantfile_context(topology, config, project_dir))


def render_template(template: Path, context: dict) -> str:
    template = Path(template)
    try:
        env = make_environment(template.parent)
        return env.get_template(template.name).render(**context)
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(f"{template}:{exc.lineno}: template syntax error: {exc.message}",
                          "fix the template; see https://jinja.palletsprojects.com/templates/") from None
    except jinja2.UndefinedError as exc:
        line = _template_line(exc, template)
        where = f"{template}:{line}" if line else str(template)
        raise RenderError(f"{where}: undefined variable: {exc.message}",
                          f"the template may use: {', '.join(sorted(context))}") from None
    except jinja2.TemplateNotFound as exc:
        if exc.name in (None, template.name):
            raise RenderError(f"template {template} not found",
                              "restore it, or remove the project's copy of Vagrantfile.j2 to use devbox's own; if "
                              "devbox's own is missing, reinstall devbox") from None
        raise RenderError(f"{template}: the template {exc.name!r} it includes was not found in {template.parent}",
                          "add that file next to the template or remove the include") from None
    except UnicodeDecodeError as exc:
        raise RenderError(f"{template} (or a template it includes) is not a UTF-8 text file ({exc.reason} at byte "
                          f"{exc.start})", "save the template as UTF-8") from None
    except RecursionError:
        raise RenderError(f"{template} includes itself (directly or through other templates) without end",
                          "remove the include that leads back to it") from None
    except OSError as exc:
        raise RenderError(f"cannot read {exc.filename or template}: {exc.strerror}") from None


def _template_line(exc: BaseException, template: Path) -> int | None:
    """Jinja rewrites tracebacks so template frames carry the template's file name and line."""
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == str(template):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def write_if_changed(path: Path, data: str | bytes, *, mode: int = 0o644) -> bool:
    """Atomic write, skipped when the file already holds exactly this content and mode (no mtime churn)."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        st = path.stat()
        if (st.st_mode & 0o777) == mode and path.read_bytes() == raw:
            return False
    except FileNotFoundError:
        pass
    atomic_write(path, raw, mode=mode)
    return True


Validator = Callable[[Path], None]  # raises RenderError with Vagrant's message when the Vagrantfile is rejected


def install_vagrantfile(project_dir: Path, text: str, validate: Validator | None) -> bool:
    """Write ``Vagrantfile`` atomically and validate it; on rejection the previous file is put back."""
    path = Path(project_dir) / "Vagrantfile"
    previous = path.read_bytes() if path.exists() else None
    previous_stat = path.stat() if previous is not None else None
    previous_mode = (previous_stat.st_mode & 0o777) if previous_stat else 0o644
    changed = write_if_changed(path, text, mode=previous_mode)
    if validate is None:
        return changed
    try:
        validate(Path(project_dir))
    except BaseException:
        if changed:
            if previous is None:
                os.unlink(path)
            else:
                atomic_write(path, previous, mode=previous_mode)
                # the same times too, so tools that watch the file see no change at all
                os.utime(path, ns=(previous_stat.st_atime_ns, previous_stat.st_mtime_ns))
        raise
    return changed
