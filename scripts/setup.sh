#!/usr/bin/env bash
# Set up a jobserver checkout: a virtualenv in .venv with the package installed
# (editable), and the browser libraries from the npm registry copied into
# static/vendor.  With --test, also the test tools and the system packages the
# browser, Apache, nginx and Slurm tests need (Debian's chromium, apache2,
# mod_wsgi, nginx, slurm-wlm, munge; only when run as root and only what is
# missing), and a single-node Slurm on this machine when `sinfo` gets no answer.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[setup] %s\n' "$*"; }

# A single-node Slurm (controller and node daemon on this machine, no
# systemd; ../shared/SLURM.md) for the `jobworker pool` tests.  Only when
# `sinfo` gets no answer, as root, and never over a slurm.conf this script
# did not write (a real cluster's).
SLURM_CONF=/etc/slurm/slurm.conf
SLURM_MARK='# written by jobserver scripts/setup.sh: a single-node Slurm for the tests'
slurm_answers() { timeout 30 sinfo >/dev/null 2>&1; }
start_slurm() {
  slurm_answers && return 0
  if [ "$(id -u)" != 0 ] || [ ! -x /usr/sbin/slurmctld ] || [ ! -x /usr/sbin/munged ]; then
    log "no Slurm answers sinfo (and this is not root with slurm-wlm and munge): the Slurm tests will skip"
    return 0
  fi
  if [ -e "$SLURM_CONF" ] && ! grep -qxF "$SLURM_MARK" "$SLURM_CONF"; then
    log "$SLURM_CONF is not ours and sinfo gets no answer: not touching it (the Slurm tests will skip)"
    return 0
  fi
  log "starting a single-node Slurm (munged, slurmctld, slurmd)"
  mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
  chown slurm: /var/spool/slurmctld /var/log/slurm
  chown munge: /run/munge
  cat > "$SLURM_CONF" <<EOF
$SLURM_MARK
ClusterName=local
SlurmctldHost=$(hostname)
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
$(slurmd -C | head -1) State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  # each daemon only if it is not running yet (a rerun must not start a second)
  pgrep -x munged >/dev/null || su -s /bin/sh munge -c /usr/sbin/munged
  pgrep -x slurmctld >/dev/null || slurmctld
  pgrep -x slurmd >/dev/null || slurmd
  for _ in $(seq 60); do
    if sinfo -h -o %t 2>/dev/null | grep -qx idle; then
      log "Slurm is up: $(sinfo -h | head -1)"
      return 0
    fi
    sleep 1
  done
  log "Slurm did not come up within a minute (see /var/log/slurm/): the Slurm tests will fail"
}

if [ "$want_test" = 1 ]; then
  missing=()
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v apache2 >/dev/null 2>&1 || [ -x /usr/sbin/apache2 ] || missing+=(apache2)
  [ -e /usr/lib/apache2/modules/mod_wsgi.so ] || missing+=(libapache2-mod-wsgi-py3)
  [ -x /usr/sbin/nginx ] || missing+=(nginx)
  /usr/bin/python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
  { [ -x /usr/sbin/slurmctld ] && [ -x /usr/bin/sbatch ]; } || missing+=(slurm-wlm)
  [ -x /usr/sbin/munged ] || missing+=(munge)
  if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      log "installing system packages: ${missing[*]}"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
      log "missing system packages (${missing[*]}): the browser/Apache/nginx/Slurm tests will skip"
    fi
  fi
  start_slurm
fi

if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
if [ "$want_test" = 1 ]; then
  log "installing jobserver (editable) with test extras"
  .venv/bin/python -m pip install -q -e '.[test,postgres,scale]'
else
  log "installing jobserver (editable)"
  .venv/bin/python -m pip install -q -e .
fi

log "installing browser libraries (package.json)"
npm install --no-package-lock --no-audit --no-fund --loglevel=error >/dev/null
mkdir -p static/vendor
cp node_modules/socket.io-client/dist/socket.io.min.js static/vendor/
cp node_modules/chart.js/dist/chart.umd.js static/vendor/chart.umd.js
log "done"
