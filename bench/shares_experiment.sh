#!/bin/bash
# Shared folders on libvirt, measured on one VM (run inside the lab: needs VAGRANT_HOME, DEVBOX_APT_PROXY and the
# lab's libvirt):
#   devbox lab up --name NAME && devbox box build --lab NAME
#   devbox lab exec --name NAME -- nice -n 19 bash bench/shares_experiment.sh virtiofs   (or 9p)
#   devbox lab down --name NAME
# For the share TYPE given it boots one VM with a folder shared from the host, and records:
#   - whether the share is mounted and how long a host-side edit takes to be readable in the guest;
#   - (virtiofs only, with GUNICORN=1) gunicorn --reload serving a file from the share, and how long a host-side
#     edit takes to be served over HTTP from the host;
#   - `vagrant snapshot save` of the running VM (libvirt: disk + memory) and its restore: exit code and message;
#   - the same after `vagrant halt` (disk only), then `vagrant up`: is the share mounted again.
# Everything goes to $OUT (default /var/tmp/shares-exp-TYPE); one line per result to $OUT/results.txt.
set -u
TYPE=${1:-virtiofs}
OUT=${OUT:-/var/tmp/shares-exp-$TYPE}
rm -rf "$OUT"; mkdir -p "$OUT/project" "$OUT/src"
chmod 755 "$OUT" "$OUT/project" "$OUT/src"    # qemu (9p passthrough) runs as libvirt-qemu
LOG=$OUT/log.txt; RESULTS=$OUT/results.txt
cd "$OUT/project"
now() { date +%s.%N; }
since() { awk -v a="$(now)" -v b="$1" 'BEGIN { printf "%.2f", a - b }'; }
result() { echo "$*" | tee -a "$RESULTS"; }
step() { echo "=== $*" >>"$LOG"; }

MEMORY_BACKING=""
READ_ONLY='readonly: true'
if [ "$TYPE" = virtiofs ]; then
  MEMORY_BACKING='lv.memorybacking :source, :type => "memfd"
      lv.memorybacking :access, :mode => "shared"'
  # libvirt 9.0: "virtiofs does not yet support read-only mode": the guest mounts it read-only instead
  READ_ONLY='mount_opts: "ro"'
fi
cat >Vagrantfile <<EOF
Vagrant.configure("2") do |config|
  config.vm.box = "devbox/debian12"
  config.vm.boot_timeout = 1800   # a starved machine under emulation
  config.vm.synced_folder ".", "/vagrant", disabled: true
  config.vm.synced_folder "../src", "/srv/src", type: "$TYPE", $READ_ONLY
  config.vm.define "share-1" do |m|
    m.vm.hostname = "share-1"
    m.vm.network :private_network, ip: "192.168.56.201"
    m.vm.provider :libvirt do |lv|
      lv.memory = 384
      lv.cpus = 1
      $MEMORY_BACKING
    end
  end
end
EOF
echo "v1" >"$OUT/src/version.txt"
chmod 644 "$OUT/src/version.txt"

result "type=$TYPE"
step "vagrant up"; t=$(now)
vagrant up --no-provision >>"$LOG" 2>&1; rc=$?
result "up rc=$rc seconds=$(since "$t")"
if [ $rc -ne 0 ]; then tail -30 "$LOG"; exit 1; fi
vagrant ssh-config >ssh-config 2>>"$LOG"
SSH="ssh -F ssh-config -o BatchMode=yes share-1"
result "mount: $($SSH 'grep /srv/src /proc/mounts' 2>&1)"
result "read: $($SSH 'cat /srv/src/version.txt' 2>&1)"
$SSH 'sudo virsh --version >/dev/null 2>&1; true'

# A host-side edit, seen in the guest: one ssh session polls the file every 20 ms and exits when it changes; the time
# from the write to that exit (ssh's own exit latency included) is the upper bound measured.
propagate() {
  local value=$1
  $SSH "while ! grep -qx $value /srv/src/version.txt; do sleep 0.02; done" &
  local pid=$!
  sleep 3   # the ssh session is polling by now
  local t; t=$(now)
  echo "$value" >"$OUT/src/version.txt.tmp"; mv "$OUT/src/version.txt.tmp" "$OUT/src/version.txt"
  wait $pid
  result "edit seen in guest ($value, rename): $(since "$t") s"
  $SSH "while ! grep -qx ${value}b /srv/src/version.txt; do sleep 0.02; done" &
  pid=$!
  sleep 3
  t=$(now)
  echo "${value}b" >"$OUT/src/version.txt"   # in place, as an editor without atomic save writes
  wait $pid
  result "edit seen in guest (${value}b, in place): $(since "$t") s"
}
propagate v2
propagate v3

if [ "${GUNICORN:-0}" = 1 ]; then
  step "gunicorn"
  cat >"$OUT/src/app.py" <<'EOF'
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"version 1\n"]
EOF
  chmod 644 "$OUT/src/app.py"
  t=$(now)
  $SSH "echo 'Acquire::http::Proxy \"$DEVBOX_APT_PROXY\";' | sudo tee /etc/apt/apt.conf.d/01proxy >/dev/null &&
        sudo apt-get update -q >/dev/null && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends gunicorn >/dev/null" >>"$LOG" 2>&1
  result "gunicorn installed rc=$? seconds=$(since "$t")"
  $SSH "sudo systemd-run --unit=app --property=WorkingDirectory=/srv/src /usr/bin/gunicorn --reload --workers 3 --bind 0.0.0.0:8000 app:app" >>"$LOG" 2>&1
  for i in $(seq 60); do curl -s -m 2 http://192.168.56.201:8000/ | grep -q "version 1" && break; sleep 1; done
  result "served: $(curl -s -m 5 http://192.168.56.201:8000/)"
  for v in 2 3 4; do
    sleep 5
    t=$(now)
    sed -i "s/version [0-9]*/version $v/" "$OUT/src/app.py"
    seen=""
    while [ "$(since "$t" | cut -d. -f1)" -lt 60 ]; do   # whole seconds
      if curl -s -m 2 http://192.168.56.201:8000/ | grep -q "version $v"; then seen=$(since "$t"); break; fi
      sleep 0.05
    done
    result "edit served over HTTP (version $v): ${seen:-not within 60} s"
  done
fi

step "snapshot save running"; t=$(now)
out=$(vagrant snapshot save share-1 running 2>&1); rc=$?
echo "$out" >>"$LOG"
result "snapshot save (running, memory) rc=$rc seconds=$(since "$t") : $(echo "$out" | grep -m1 -E 'Call to|rror' || echo "$out" | tail -2 | tr '\n' ' ')"
if [ $rc -eq 0 ]; then
  echo "after-snap" >"$OUT/src/version.txt"
  t=$(now)
  out=$(vagrant snapshot restore --no-provision share-1 running 2>&1); rc=$?
  echo "$out" >>"$LOG"
  result "snapshot restore (running) rc=$rc seconds=$(since "$t") : $(echo "$out" | tail -3 | tr '\n' ' ')"
  result "after restore: mount: $($SSH 'grep /srv/src /proc/mounts' 2>&1 | head -1) read: $($SSH 'cat /srv/src/version.txt' 2>&1)"
fi

step "halt"; t=$(now)
vagrant halt >>"$LOG" 2>&1
result "halt rc=$? seconds=$(since "$t")"
t=$(now)
out=$(vagrant snapshot save share-1 halted 2>&1); rc=$?
echo "$out" >>"$LOG"
result "snapshot save (halted, disk only) rc=$rc seconds=$(since "$t") : $(echo "$out" | tail -2 | tr '\n' ' ')"
t=$(now)
out=$(vagrant snapshot restore --no-provision share-1 halted 2>&1); rc=$?   # as devbox restores
echo "$out" >>"$LOG"
result "snapshot restore (halted) rc=$rc seconds=$(since "$t") : $(echo "$out" | tail -2 | tr '\n' ' ')"
result "state after halted restore: $(vagrant status share-1 --machine-readable | grep ',state,' | cut -d, -f4)"
t=$(now)
vagrant up --no-provision >>"$LOG" 2>&1
result "up after halted restore rc=$? seconds=$(since "$t")"
result "after up: mount: $($SSH 'grep /srv/src /proc/mounts' 2>&1 | head -1) read: $($SSH 'cat /srv/src/version.txt' 2>&1)"
virsh dumpxml "$(virsh list --name | grep share-1 | head -1)" >"$OUT/domain.xml" 2>>"$LOG"
step "destroy"; vagrant destroy -f >>"$LOG" 2>&1
result "done"
