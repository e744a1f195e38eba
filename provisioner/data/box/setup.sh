#!/bin/sh
# Runs inside the new root file system (chroot) at the end of the box build. Files were copied in before.
set -eu

# The account Vagrant logs in with: passwordless sudo, Vagrant's well-known insecure key (Vagrant replaces it
# with a per-VM key on first `vagrant up`).
useradd --create-home --shell /bin/bash --user-group vagrant
echo 'vagrant ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/vagrant
chmod 0440 /etc/sudoers.d/vagrant
install -d -m 0700 -o vagrant -g vagrant /home/vagrant/.ssh
install -m 0600 -o vagrant -g vagrant /root/devbox-vagrant.pub /home/vagrant/.ssh/authorized_keys
rm -f /root/devbox-vagrant.pub

# Network: systemd-networkd with DHCP on every interface; Vagrant adds its own files for static addresses.
systemctl enable systemd-networkd.service ssh-host-keys.service ssh.service
rm -f /etc/ssh/ssh_host_*
# Only ed25519 and ECDSA host keys (see ssh-host-keys.service): an RSA key takes minutes to generate under
# software emulation, and every client devbox uses speaks ed25519.
printf 'HostKey /etc/ssh/ssh_host_ed25519_key\nHostKey /etc/ssh/ssh_host_ecdsa_key\n' > /etc/ssh/sshd_config.d/devbox.conf
# network-online.target waits for one configured link, not all: a private network without DHCP must not
# hold up boot for two minutes.
mkdir -p /etc/systemd/system/systemd-networkd-wait-online.service.d
printf '[Service]\nExecStart=\nExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=30\n' \
  > /etc/systemd/system/systemd-networkd-wait-online.service.d/devbox.conf

# Nothing that competes with the first `vagrant up` and Ansible run for the single emulated CPU: the scrub
# reaper alone costs two minutes of boot there, and apt's timers would take the dpkg lock from Ansible.
systemctl disable e2scrub_reap.service e2scrub_all.timer apt-daily.timer apt-daily-upgrade.timer \
  dpkg-db-backup.timer fstrim.timer
systemctl set-default multi-user.target

echo devbox > /etc/hostname
printf '127.0.0.1\tlocalhost\n127.0.1.1\tdevbox\n::1\tlocalhost ip6-localhost ip6-loopback\n' > /etc/hosts
printf '/dev/vda\t/\text4\tdefaults,errors=remount-ro\t0\t1\n' > /etc/fstab

# An empty machine-id makes systemd create a fresh one in every VM (DHCP leases and journals differ per VM).
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id

# A small initramfs with only what a virtio guest needs to mount its root (the conf.d file sets MODULES=list).
printf '%s\n' virtio_pci virtio_blk virtio_net ext4 > /etc/initramfs-tools/modules
update-initramfs -u -k all

apt-get clean
rm -rf /var/lib/apt/lists/* /var/log/*.log /var/log/apt/* /tmp/* /root/devbox-setup.sh
