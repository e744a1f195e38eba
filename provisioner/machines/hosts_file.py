"""A marked block of a hosts file (/etc/hosts) that devbox owns: render it, put it in, take it out.

The block is the lines from its begin marker to its end marker, both naming the project, so two projects
keep two blocks. Everything outside the block is kept byte for byte: comments, CRLF line ends, a last line
without a newline, bytes that are not UTF-8. A file with a begin marker and no end (or the reverse) is refused:
devbox cannot tell where its block stops, and guessing could delete the user's lines.

The file is written through a temporary file in its own folder and a rename, keeping its mode and owner; where
the rename cannot replace it (a bind-mounted /etc/hosts in a container: EBUSY), it is rewritten in place.
"""
from __future__ import annotations

import errno
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from provisioner.errors import DevboxError

DEFAULT_HOSTS = Path("/etc/hosts")
_BEGIN = "# >>> devbox {} >>>"
_END = "# <<< devbox {} <<<"
_ANY_BEGIN = re.compile(rb"^# >>> devbox (.*) >>>$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class HostsEntry:
    address: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class HostsWrite:
    path: Path
    changed: bool              # False: the file already said this (nothing written)
    in_place: bool = False     # the rename could not replace the file (bind mount): rewritten in place
    removed: bool = False      # --remove: there was a block and it is gone


class HostsFileError(DevboxError):
    """A hosts file devbox will not change (malformed block) or cannot read or write."""


def project_label(project_root: Path) -> str:
    """What the markers name: the project's folder (two checkouts of one project are two projects)."""
    return _CONTROL.sub("?", str(Path(project_root).resolve()))


def block_lines(label: str, entries: Sequence[HostsEntry], comment: str = "") -> list[str]:
    lines = [_BEGIN.format(label)]
    if comment:
        lines.append(f"# {_CONTROL.sub('?', comment)}")
    width = max((len(e.address) for e in entries), default=0)
    lines += [f"{e.address.ljust(width)}  {' '.join(e.names)}" for e in entries]
    lines.append(_END.format(label))
    return lines


def render_block(label: str, entries: Sequence[HostsEntry], comment: str = "") -> str:
    """The block as printed (`devbox hosts`), to paste into a hosts file."""
    return "\n".join(block_lines(label, entries, comment)) + "\n"


@dataclass(frozen=True)
class _Span:
    start: int       # offset of the begin line
    stop: int        # offset just after the end line's text (before its line end)
    after: int       # offset after the end line's line end (== stop when the file ends there)
    line: int        # the begin line's number (1-based), for messages


def _lines(data: bytes):
    """(line number, start offset, text without its line end, offset after the line end)."""
    pos, number = 0, 0
    while pos < len(data):
        number += 1
        nl = data.find(b"\n", pos)
        after = len(data) if nl < 0 else nl + 1
        text = data[pos:after].rstrip(b"\n")
        if text.endswith(b"\r"):
            text = text[:-1]
        yield number, pos, text, after
        pos = after


def find_block(data: bytes, label: str, path: Path) -> _Span | None:
    """Where this project's block is; None when there is none. Malformed markers raise ``HostsFileError``."""
    begin, end = _BEGIN.format(label).encode(), _END.format(label).encode()
    found, open_at = None, None
    for number, start, text, after in _lines(data):
        if text == begin:
            if open_at is not None or found is not None:
                raise _malformed(path, number, f"a second begin line of this project's block (`{begin.decode()}`)")
            open_at = (number, start)
        elif text == end:
            if open_at is None:
                raise _malformed(path, number, f"an end line (`{end.decode()}`) without its begin line before it")
            stop = start + len(text)
            found, open_at = _Span(open_at[1], stop, after, open_at[0]), None
    if open_at is not None:
        raise _malformed(path, open_at[0], f"the begin line of this project's block has no end line "
                                           f"(`{end.decode()}`)")
    return found


def _malformed(path: Path, line: int, what: str) -> HostsFileError:
    return HostsFileError(f"{path}:{line}: {what}; devbox cannot tell where its block stops, so it changed nothing",
                          "fix the markers by hand (or delete the block's lines), then run the command again")


def with_block(data: bytes, label: str, entries: Sequence[HostsEntry], path: Path, comment: str = "") -> bytes:
    """``data`` with this project's block in place of its old one (or appended); all else byte for byte."""
    newline = b"\r\n" if b"\r\n" in data else b"\n"
    block = newline.join(line.encode() for line in block_lines(label, entries, comment))
    span = find_block(data, label, path)
    if span is not None:
        return data[:span.start] + block + data[span.stop:]
    if not data:
        return block + newline
    if data.endswith(b"\n"):
        return data + block + newline
    # the last line has no line end: the block brings the one before it, and ends the file the same way, so
    # taking the block out gives the original bytes back
    return data + newline + block


def without_block(data: bytes, label: str, path: Path) -> bytes | None:
    """``data`` without this project's block; None when it has none."""
    span = find_block(data, label, path)
    if span is None:
        return None
    if span.after > span.stop or span.start == 0:  # the end line had a line end (or the block is the whole file)
        return data[:span.start] + data[span.after:]
    # the block ends the file without a line end: the line end before it came with it (see with_block)
    cut = span.start - (2 if data[:span.start].endswith(b"\r\n") else 1)
    return data[:cut]


def other_blocks(data: bytes, label: str) -> list[str]:
    """The labels of other devbox projects' blocks in the file."""
    found = []
    for _, _, text, _ in _lines(data):
        match = _ANY_BEGIN.match(text)
        if match and match.group(1).decode("utf-8", "replace") != label:
            found.append(match.group(1).decode("utf-8", "replace"))
    return found


def names_in(data: bytes, label: str) -> set[str]:
    """Every host name the file gives outside this project's block (to warn about names given twice)."""
    span = None
    try:
        span = find_block(data, label, Path("hosts"))
    except HostsFileError:
        pass
    rest = data if span is None else data[:span.start] + data[span.after:]
    names = set()
    for _, _, text, _ in _lines(rest):
        fields = text.split(b"#", 1)[0].split()
        names.update(f.decode("utf-8", "replace").lower() for f in fields[1:])
    return names


# --- reading and writing the file ---------------------------------------------------------------------------

def _denied(path: Path, action: str, exc: OSError) -> HostsFileError:
    how = "sudo env PATH=\"$PATH\" devbox hosts " + ("--remove" if action == "remove" else "--write")
    if path != DEFAULT_HOSTS:
        how += f" --file {path}"
    return HostsFileError(f"cannot {'change' if action != 'read' else 'read'} {path}: {exc.strerror}",
                          f"run it as root ({how}), or print the block with `devbox hosts` and paste it into "
                          f"{path} yourself")


def read_hosts(path: Path) -> bytes:
    """The file's bytes; a file that does not exist yet reads as empty."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return b""
    except IsADirectoryError:
        raise HostsFileError(f"{path} is a directory, not a hosts file", "give a file with --file PATH") from None
    except PermissionError as exc:
        raise _denied(path, "read", exc) from None
    except OSError as exc:
        raise HostsFileError(f"cannot read {path}: {exc.strerror}", "check the path given with --file") from None


def write_hosts(path: Path, data: bytes, *, action: str = "write") -> bool:
    """Replace the file's content with ``data``: a temporary file in the same folder renamed over it (mode and
    owner kept); rewritten in place where the rename cannot replace it (a bind mount: EBUSY) or the folder
    is not writable. Returns True when it had to write in place."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise HostsFileError(f"cannot read {path}: {exc.strerror}", "check the path given with --file") from None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".devbox-tmp")
    except PermissionError as exc:
        if st is None:
            raise _denied(path, action, exc) from None
        _write_in_place(path, data, action)
        return True
    except OSError as exc:
        raise HostsFileError(f"cannot write beside {path}: {exc.strerror}",
                             "check the path given with --file") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if st is not None:
                os.fchmod(fh.fileno(), st.st_mode & 0o7777)
                if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
                    os.fchown(fh.fileno(), st.st_uid, st.st_gid)
            else:
                os.fchmod(fh.fileno(), 0o644)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return False
    except OSError as exc:
        _unlink(tmp)
        # a mount point cannot be replaced (EBUSY); a file we may write but not own cannot keep its owner (EPERM)
        if st is not None and exc.errno in (errno.EBUSY, errno.EPERM, errno.EXDEV):
            _write_in_place(path, data, action)
            return True
        if isinstance(exc, PermissionError):
            raise _denied(path, action, exc) from None
        raise HostsFileError(f"cannot write {path}: {exc.strerror}", "check the path given with --file") from None
    except BaseException:
        _unlink(tmp)
        raise


def _write_in_place(path: Path, data: bytes, action: str) -> None:
    """Rewrite the file through its own inode (what a bind mount allows); one write, then truncate."""
    try:
        with open(path, "r+b") as fh:
            fh.write(data)
            fh.truncate()
            fh.flush()
            os.fsync(fh.fileno())
    except PermissionError as exc:
        raise _denied(path, action, exc) from None
    except OSError as exc:
        raise HostsFileError(f"cannot write {path}: {exc.strerror}", "check the path given with --file") from None


def _unlink(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


def put_block(path: Path, label: str, entries: Sequence[HostsEntry], comment: str = "") -> HostsWrite:
    """Write this project's block into the hosts file at ``path`` (symlinks followed)."""
    path = Path(os.path.realpath(path))
    old = read_hosts(path)
    new = with_block(old, label, entries, path, comment)
    if new == old and path.exists():
        return HostsWrite(path, changed=False)
    return HostsWrite(path, changed=True, in_place=write_hosts(path, new))


def take_block(path: Path, label: str) -> HostsWrite:
    """Take this project's block out of the hosts file at ``path``; nothing written when there is none."""
    path = Path(os.path.realpath(path))
    old = read_hosts(path)
    new = without_block(old, label, path)
    if new is None:
        return HostsWrite(path, changed=False)
    return HostsWrite(path, changed=True, in_place=write_hosts(path, new, action="remove"), removed=True)
