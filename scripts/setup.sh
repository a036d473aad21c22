#!/usr/bin/env bash
# Set up a jobserver checkout: a virtualenv in .venv with the package installed
# (editable), and the browser libraries from the npm registry copied into
# static/vendor.  With --test, also the test tools and the system packages the
# browser and Apache tests need (Debian's chromium, apache2, mod_wsgi; only
# when run as root and only what is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[setup] %s\n' "$*"; }

if [ "$want_test" = 1 ]; then
  missing=()
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v apache2 >/dev/null 2>&1 || [ -x /usr/sbin/apache2 ] || missing+=(apache2)
  [ -e /usr/lib/apache2/modules/mod_wsgi.so ] || missing+=(libapache2-mod-wsgi-py3)
  /usr/bin/python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
  if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      log "installing system packages: ${missing[*]}"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
      log "missing system packages (${missing[*]}): the browser/Apache tests will skip"
    fi
  fi
fi

if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
if [ "$want_test" = 1 ]; then
  log "installing jobserver (editable) with test extras"
  .venv/bin/python -m pip install -q -e '.[test,postgres]'
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
