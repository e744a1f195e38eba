"""The hosts-file block (machines/hosts_file.py): every byte outside the block is kept, two projects keep two
blocks, a malformed block is refused without writing, and the file is replaced atomically (mode and owner kept)
or, where a bind mount forbids the rename, rewritten in place; a real bind mount and a real permission denial
(an unprivileged user namespace) run it the way a container and a non-root user would."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.machines import hosts_file
from provisioner.machines.hosts_file import (HostsEntry, HostsFileError, put_block, take_block, with_block,
                                             without_block)

REPO = Path(__file__).resolve().parents[2]
P = Path("hosts")
A, B = "/srv/project-a", "/srv/project-b"
ENTRIES = (HostsEntry("192.168.56.11", ("lb-1.devbox.test",)), HostsEntry("192.168.56.12", ("web-1.devbox.test",)))
OTHER = (HostsEntry("192.168.57.11", ("api-1.devbox.test",)),)

# a Debian /etc/hosts as installed, plus a comment and a line the user added
DEBIAN = (b"127.0.0.1\tlocalhost\n127.0.1.1\tbox\n\n# The following lines are desirable for IPv6 capable hosts\n"
          b"::1     localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n"
          b"10.0.0.5 intranet # added by hand\n")
ORIGINALS = {
    "debian": DEBIAN,
    "empty": b"",
    "no trailing newline": DEBIAN.rstrip(b"\n"),
    "crlf": DEBIAN.replace(b"\n", b"\r\n"),
    "crlf no trailing newline": DEBIAN.replace(b"\n", b"\r\n").rstrip(b"\r\n"),
    "not utf-8": b"127.0.0.1 localhost # caf\xe9\n\xff\xfe odd bytes\n",
    "blank lines only": b"\n\n",
}


@pytest.mark.parametrize("original", ORIGINALS.values(), ids=ORIGINALS.keys())
def test_write_then_remove_gives_back_every_byte(original):
    written = with_block(original, A, ENTRIES, P)
    assert written.startswith(original.rstrip(b"\r\n") if not original.endswith(b"\n") else original)
    assert b"192.168.56.11  lb-1.devbox.test" in written
    assert without_block(written, A, P) == original


@pytest.mark.parametrize("original", ORIGINALS.values(), ids=ORIGINALS.keys())
def test_writing_again_replaces_only_the_block(original):
    once = with_block(original, A, ENTRIES, P)
    assert with_block(once, A, ENTRIES, P) == once  # the same plan: the same bytes
    changed = with_block(once, A, ENTRIES[:1], P)
    assert b"web-1" not in changed and b"lb-1.devbox.test" in changed
    assert without_block(changed, A, P) == original


def test_crlf_file_gets_crlf_block_lines_and_lf_file_lf():
    crlf = with_block(ORIGINALS["crlf"], A, ENTRIES, P)
    block = crlf[len(ORIGINALS["crlf"]):]
    assert block.count(b"\r\n") == block.count(b"\n") == 4  # begin, two VMs, end
    lf = with_block(DEBIAN, A, ENTRIES, P)
    assert b"\r" not in lf


def test_no_trailing_newline_stays_so():
    written = with_block(ORIGINALS["no trailing newline"], A, ENTRIES, P)
    assert not written.endswith(b"\n")
    assert written.endswith(b"# <<< devbox /srv/project-a <<<")


def test_a_block_in_the_middle_keeps_the_lines_after_it():
    text = with_block(DEBIAN, A, ENTRIES, P) + b"# the user's line after the block\n"
    replaced = with_block(text, A, OTHER, P)
    assert replaced.endswith(b"# <<< devbox /srv/project-a <<<\n# the user's line after the block\n")
    assert without_block(replaced, A, P) == DEBIAN + b"# the user's line after the block\n"


def test_two_projects_keep_two_blocks():
    both = with_block(with_block(DEBIAN, A, ENTRIES, P), B, OTHER, P)
    again = with_block(both, A, ENTRIES[:1], P)  # A changes: B's block is untouched
    assert (b"# >>> devbox /srv/project-b >>>\n192.168.57.11  api-1.devbox.test\n# <<< devbox /srv/project-b <<<\n"
            in again)
    assert without_block(without_block(again, A, P), B, P) == DEBIAN
    assert without_block(without_block(again, B, P), A, P) == DEBIAN
    assert hosts_file.other_blocks(again, A) == [B]


def test_a_project_whose_path_starts_like_another_is_another_project():
    both = with_block(with_block(DEBIAN, A, ENTRIES, P), A + "-old", OTHER, P)
    assert without_block(both, A, P) == with_block(DEBIAN, A + "-old", OTHER, P)


@pytest.mark.parametrize("text, where", [
    (DEBIAN + b"# >>> devbox /srv/project-a >>>\n1.2.3.4 x\n", "hosts:9: the begin line"),
    (DEBIAN + b"# <<< devbox /srv/project-a <<<\n", "hosts:9: an end line"),
    (DEBIAN + b"# >>> devbox /srv/project-a >>>\n# >>> devbox /srv/project-a >>>\n# <<< devbox /srv/project-a <<<\n",
     "hosts:10: a second begin line"),
    (with_block(DEBIAN, A, ENTRIES, P) * 2, "a second begin line"),
], ids=["begin without end", "end without begin", "nested begin", "block twice"])
def test_malformed_markers_are_refused(text, where):
    for change in (lambda: with_block(text, A, ENTRIES, P), lambda: without_block(text, A, P)):
        with pytest.raises(HostsFileError) as err:
            change()
        assert where in str(err.value) and "changed nothing" in str(err.value) and err.value.hint


def test_malformed_file_on_disk_is_not_written(tmp_path):
    path = tmp_path / "hosts"
    path.write_bytes(DEBIAN + b"# >>> devbox /srv/project-a >>>\n")
    before = os.stat(path)
    with pytest.raises(HostsFileError):
        put_block(path, A, ENTRIES)
    with pytest.raises(HostsFileError):
        take_block(path, A)
    assert path.read_bytes() == DEBIAN + b"# >>> devbox /srv/project-a >>>\n"
    assert os.stat(path).st_ino == before.st_ino and list(tmp_path.iterdir()) == [path]


def test_another_projects_broken_block_does_not_stop_this_one():
    broken_b = DEBIAN + b"# >>> devbox /srv/project-b >>>\n"
    assert without_block(with_block(broken_b, A, ENTRIES, P), A, P) == broken_b


def test_file_write_keeps_mode_owner_and_replaces_atomically(tmp_path):
    path = tmp_path / "hosts"
    path.write_bytes(DEBIAN)
    os.chmod(path, 0o640)
    os.chown(path, 65534, 65534) if os.geteuid() == 0 else None
    owner = os.stat(path).st_uid, os.stat(path).st_gid
    inode = os.stat(path).st_ino
    result = put_block(path, A, ENTRIES)
    assert result.changed and not result.in_place
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o640 and (st.st_uid, st.st_gid) == owner
    assert st.st_ino != inode  # a new file renamed over the old one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hosts"]  # no temporary file left
    assert put_block(path, A, ENTRIES).changed is False  # unchanged: not written again
    assert os.stat(path).st_mtime_ns == st.st_mtime_ns
    assert take_block(path, A).removed and path.read_bytes() == DEBIAN
    assert take_block(path, A).changed is False


def test_a_symlinked_hosts_file_is_changed_where_it_points(tmp_path):
    target = tmp_path / "real-hosts"
    target.write_bytes(DEBIAN)
    link = tmp_path / "hosts"
    link.symlink_to(target)
    result = put_block(link, A, ENTRIES)
    assert link.is_symlink() and result.path == target and b"lb-1" in target.read_bytes()


def test_a_missing_file_is_created(tmp_path):
    path = tmp_path / "hosts"
    put_block(path, A, ENTRIES)
    assert path.read_bytes() == with_block(b"", A, ENTRIES, P)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


# the same calls as put_block/take_block, run in another process (a user namespace) on a real file
RUN = """
import sys
from pathlib import Path
from provisioner.errors import DevboxError
from provisioner.machines.hosts_file import HostsEntry, put_block
try:
    result = put_block(Path(sys.argv[1]), "/srv/project-a", (HostsEntry("192.168.56.11", ("lb-1.devbox.test",)),))
except DevboxError as exc:
    print("ERROR", exc, "|", exc.hint)
    sys.exit(1)
print("IN PLACE" if result.in_place else "RENAMED")
"""


def _in_namespace(prefix: list[str], script: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([*prefix, "sh", "-c", script], capture_output=True, text=True, env=env, timeout=60)


def test_a_bind_mounted_hosts_file_is_rewritten_in_place(tmp_path):
    """As /etc/hosts in a container: rename over a mount point fails with EBUSY; the file is rewritten in place."""
    source, mounted = tmp_path / "source", tmp_path / "mounted"
    source.write_bytes(ORIGINALS["no trailing newline"])
    mounted.write_bytes(b"")
    (tmp_path / "run.py").write_text(RUN)
    proc = _in_namespace(["unshare", "--user", "--map-root-user", "--mount"],
                         f"mount --bind {source} {mounted} && {sys.executable} {tmp_path / 'run.py'} {mounted}")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert proc.stdout.strip() == "IN PLACE"
    # through the mount, the source file itself changed; nothing else was left in the folder
    assert source.read_bytes() == with_block(ORIGINALS["no trailing newline"], A, ENTRIES[:1], P)
    assert mounted.read_bytes() == b"" and sorted(p.name for p in tmp_path.iterdir()) == ["mounted", "run.py", "source"]


def test_permission_denied_names_the_file_and_the_next_step(tmp_path):
    """A user who may not write the file or its folder (an unprivileged user namespace: root's powers over the
    machine's files are gone there, as for any user): nothing written, the message says what to do."""
    folder = tmp_path / "etc"
    folder.mkdir()
    path = folder / "hosts"
    path.write_bytes(DEBIAN)
    (tmp_path / "run.py").write_text(RUN)
    os.chmod(path, 0o444)
    os.chmod(folder, 0o555)
    os.chmod(tmp_path, 0o755)
    try:
        proc = _in_namespace(["unshare", "--user"], f"{sys.executable} {tmp_path / 'run.py'} {path}")
    finally:
        os.chmod(folder, 0o755)
    assert proc.returncode == 1, proc.stderr + proc.stdout
    assert f"ERROR cannot change {path}: Permission denied" in proc.stdout
    assert "sudo" in proc.stdout and "paste it into" in proc.stdout
    assert path.read_bytes() == DEBIAN and sorted(p.name for p in folder.iterdir()) == ["hosts"]
