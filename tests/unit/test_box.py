"""The pure parts of `devbox box build`: apt sources (one-line and deb822), the guest's sources, the digest,
the mmdebstrap command line and the box's own files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from provisioner.lab import box
from provisioner.errors import DevboxError

# Test data uses example.org/example.net hosts: no real mirror name belongs in the project.
DEB822 = """\
Types: deb
# a comment inside a stanza
URIs: http://mirror.example.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example.org/debian-security/
Suites: bookworm-security
Components: main contrib

Types: deb-src
URIs: http://mirror.example.org/debian
Suites: bookworm
Components: main

Enabled: no
Types: deb
URIs: http://disabled.example.net/debian
Suites: bookworm
Components: main
"""

ONE_LINE = """\
# a comment
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://other.example.net/debian/ bookworm main non-free
deb-src http://other.example.net/debian bookworm main
deb http://apt.example.com/tools stable main   # not a Debian release suite
"""


def test_deb822_stanzas_give_one_source_per_uri_and_skip_disabled_ones():
    sources = box.parse_deb822_sources(DEB822)
    assert [(s.types, s.uri, s.suites) for s in sources] == [
        (("deb",), "http://mirror.example.org/debian", ("bookworm", "bookworm-updates")),
        (("deb",), "http://security.example.org/debian-security", ("bookworm-security",)),
        (("deb-src",), "http://mirror.example.org/debian", ("bookworm",)),
    ]
    assert sources[1].components == ("main", "contrib")


def test_deb822_continuation_lines_do_not_end_a_stanza():
    text = "Types: deb\nURIs: http://m.example.org/debian\nSuites: bookworm\nComponents: main\n" \
           "Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n"
    [source] = box.parse_deb822_sources(text)
    assert source.suites == ("bookworm",)


def test_one_line_sources_with_options_and_comments():
    sources = box.parse_one_line_sources(ONE_LINE)
    assert [(s.types, s.uri, s.suites, s.components) for s in sources] == [
        (("deb",), "http://other.example.net/debian", ("bookworm",), ("main", "non-free")),
        (("deb-src",), "http://other.example.net/debian", ("bookworm",), ("main",)),
        (("deb",), "http://apt.example.com/tools", ("stable",), ("main",)),
    ]


def test_read_apt_sources_reads_what_apt_reads_and_nothing_else(tmp_path):
    apt = tmp_path / "etc" / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list").write_text("deb http://one.example.org/debian bookworm main\n")
    (apt / "sources.list.d" / "debian.sources").write_text(DEB822)
    (apt / "sources.list.d" / "extra.list").write_text("deb http://two.example.org/debian bookworm main\n")
    (apt / "sources.list.d" / "old.list.disabled").write_text("deb http://never.example.org/debian bookworm main\n")
    hosts = box.mirror_hosts(box.read_apt_sources(tmp_path))
    assert hosts == ["one.example.org", "mirror.example.org", "security.example.org", "two.example.org"]


def test_guest_sources_take_the_release_suites_from_the_machine():
    sources = box.parse_deb822_sources(DEB822) + box.parse_one_line_sources(ONE_LINE)
    entries = box.one_line_entries(box.guest_sources(sources, "bookworm"))
    assert entries == [
        "deb http://mirror.example.org/debian bookworm main",
        "deb http://mirror.example.org/debian bookworm-updates main",
        "deb http://security.example.org/debian-security bookworm-security main contrib",
        "deb http://other.example.net/debian bookworm main non-free",
    ]


def test_an_explicit_mirror_replaces_the_machines_sources():
    entries = box.one_line_entries(box.guest_sources(box.parse_deb822_sources(DEB822), "bookworm",
                                                     mirror="http://given.example.org/debian/"))
    assert entries == ["deb http://given.example.org/debian bookworm main",
                       "deb http://given.example.org/debian bookworm-updates main"]


def test_no_source_for_the_release_is_a_clear_error():
    with pytest.raises(DevboxError) as err:
        box.guest_sources(box.parse_deb822_sources(DEB822), "trixie")
    assert "trixie" in str(err.value) and "--mirror" in err.value.hint


def spec(**kw) -> box.BoxSpec:
    sources = tuple(box.guest_sources(box.parse_deb822_sources(DEB822), "bookworm"))
    return box.BoxSpec(**{"release": "bookworm", "sources": sources, **kw})


def test_digest_is_stable_and_changes_with_every_input():
    base = spec().digest("KEY")
    assert base == spec().digest("KEY")
    assert base != spec(release="trixie").digest("KEY")
    assert base != spec(packages=box.BOX_PACKAGES + ("curl",)).digest("KEY")
    assert base != spec(disk_size_gb=8).digest("KEY")
    assert base != spec().digest("OTHER KEY")
    other_sources = tuple(box.guest_sources([], "bookworm", mirror="http://x.example.org/debian"))
    assert base != spec(sources=other_sources).digest("KEY")


def test_digest_changes_with_the_build_format(monkeypatch):
    base = spec().digest("KEY")
    monkeypatch.setattr(box, "BUILD_FORMAT", box.BUILD_FORMAT + 1)
    assert spec().digest("KEY") != base


def test_box_name_follows_the_debian_version():
    assert spec().name == "devbox/debian12"
    assert spec(release="trixie").name == "devbox/debian13"


def test_mmdebstrap_command_installs_our_packages_from_the_given_sources(tmp_path):
    argv = box.mmdebstrap_argv(spec(), tmp_path / "root", tmp_path / "overlay")
    assert argv[:2] == ["mmdebstrap", "--variant=minbase"]
    include = next(a for a in argv if a.startswith("--include=")).split("=", 1)[1].split(",")
    for needed in ("systemd-sysv", "linux-image-amd64", "openssh-server", "sudo", "python3", "python3-apt"):
        assert needed in include
    # the small initramfs is configured before the kernel's postinst builds the first one
    essential = next(a for a in argv if a.startswith("--essential-hook="))
    assert "MODULES=list" in essential
    assert argv[-5:] == ["bookworm", str(tmp_path / "root"),
                         "deb http://mirror.example.org/debian bookworm main",
                         "deb http://mirror.example.org/debian bookworm-updates main",
                         "deb http://security.example.org/debian-security bookworm-security main contrib"]


def test_box_files_boot_the_carried_kernel_and_describe_a_libvirt_qcow2_box():
    vagrantfile = box.box_vagrantfile()
    for setting in ("libvirt.kernel", "libvirt.initrd", "libvirt.cmd_line", "root=/dev/vda", "net.ifnames=0"):
        assert setting in vagrantfile
    assert box.metadata(4) == {"provider": "libvirt", "format": "qcow2", "virtual_size": 4}


def test_dhcp_catch_all_sorts_after_vagrants_static_network_files():
    name = "99-dhcp.network"
    assert (box.DATA_DIR / name).is_file()
    assert sorted([name, "50-vagrant-eth1.network"])[0] == "50-vagrant-eth1.network"
    assert "ClientIdentifier=mac" in (box.DATA_DIR / name).read_text()


def test_a_cached_box_that_vagrant_already_has_is_neither_built_nor_added(tmp_path, monkeypatch):
    key = tmp_path / "vagrant.pub"
    key.write_text("ssh-rsa AAAA insecure")
    monkeypatch.setattr(box, "find_insecure_key", lambda: key)
    home = tmp_path / "vagrant.d"
    builder = box.BoxBuilder(spec(), cache_dir=tmp_path / "cache", vagrant_env={"VAGRANT_HOME": str(home)})
    digest = spec().digest(key.read_text())
    cached = builder.box_path(digest)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"a box")
    marker = home / "boxes" / "devbox-VAGRANTSLASH-debian12" / "0" / "libvirt" / "devbox-box.json"
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"digest": digest}))

    def no_commands(*args, **kwargs):
        raise AssertionError(f"no command expected, got {args}")

    monkeypatch.setattr(box.process, "run", no_commands)
    result = builder.build(output=tmp_path / "out.box")
    assert result.cached and not result.added
    assert (tmp_path / "out.box").read_bytes() == b"a box"
