#!/bin/sh
# Resets what names one particular VM before its disk is exported as a box that many machines start from.
# Run in the guest as root right before it halts: reset-identity.sh --root / --key FILE
# (--root DIR works on any folder that holds a guest's root file system; the tests run it on one).
# It keeps what the VM was converged to, including the development secrets it was converged with (they travel
# with the image) and /etc/devbox/applied.json (the revision the disk holds; the next run stamps it again).
set -eu

ROOT=""
KEY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT="$2"; shift 2 ;;
    --key) KEY="$2"; shift 2 ;;
    *) echo "reset-identity: unknown argument: $1" >&2; exit 2 ;;
  esac
done
if [ -z "$ROOT" ] || [ -z "$KEY" ]; then
  echo "usage: reset-identity.sh --root DIR --key VAGRANT_INSECURE_PUBLIC_KEY" >&2
  exit 2
fi
ROOT="${ROOT%/}"
# Only on a devbox guest: its root has the vagrant user and the first-boot host key service of devbox's box.
# This keeps the script from ever rewriting the identity of the machine it is run on by mistake.
if [ ! -d "$ROOT/home/vagrant" ] || [ ! -f "$ROOT/etc/systemd/system/ssh-host-keys.service" ]; then
  echo "reset-identity: $ROOT/ is not a devbox VM's root (no /home/vagrant or ssh-host-keys.service)" >&2
  exit 1
fi
if ! grep -q '^ssh-' "$KEY"; then
  echo "reset-identity: $KEY is not an SSH public key" >&2
  exit 1
fi

# SSH host keys: every VM made from the image generates its own at first boot (ssh-host-keys.service runs
# when there is none); make sure the service is still enabled.
rm -f "$ROOT"/etc/ssh/ssh_host_*
mkdir -p "$ROOT/etc/systemd/system/multi-user.target.wants"
ln -sfn /etc/systemd/system/ssh-host-keys.service "$ROOT/etc/systemd/system/multi-user.target.wants/ssh-host-keys.service"

# machine-id: empty, so systemd makes a new one at first boot (DHCP client identifiers, journals).
: > "$ROOT/etc/machine-id"
rm -f "$ROOT/var/lib/dbus/machine-id"
# the journal's folders are named by the old machine-id
rm -rf "$ROOT"/var/log/journal/*

# Vagrant's insecure key back in place of this VM's own key: Vagrant logs in with it at first boot and then
# puts a new key of its own there.
install -d -m 0700 "$ROOT/home/vagrant/.ssh"
cp "$KEY" "$ROOT/home/vagrant/.ssh/authorized_keys"
chmod 0600 "$ROOT/home/vagrant/.ssh/authorized_keys"
chown -R --reference="$ROOT/home/vagrant" "$ROOT/home/vagrant/.ssh"
# keys of the hosts this VM logged into
rm -f "$ROOT"/root/.ssh/known_hosts "$ROOT"/home/*/.ssh/known_hosts

# Shell and tool histories of whoever logged in.
for home in "$ROOT/root" "$ROOT"/home/*; do
  [ -d "$home" ] || continue
  rm -f "$home/.bash_history" "$home/.python_history" "$home/.lesshst" "$home/.viminfo" "$home/.wget-hsts"
  rm -rf "$home/.ansible/tmp" "$home/.cache"
done

# Leases and caches of this VM's network and package runs (the next VM gets its own lease; packages the
# playbooks installed stay installed, their downloaded .deb files are not needed).
rm -f "$ROOT"/var/lib/dhcp/*.leases "$ROOT"/var/lib/systemd/network/*
rm -f "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/cache/apt/*.bin
rm -rf "$ROOT"/tmp/* "$ROOT"/var/tmp/*
# Logs of the converge run and the boots before it (the files stay, empty: services expect them).
find "$ROOT/var/log" -type f \( -name '*.gz' -o -name '*.[0-9]' -o -name '*.old' \) -delete
find "$ROOT/var/log" -type f -exec sh -c ': > "$1"' _ {} \;
echo "reset-identity: done for $ROOT/"
