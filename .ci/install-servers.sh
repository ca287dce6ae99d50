#!/usr/bin/env bash
# Install the REAL servers used by the integration tests:
#   - Rails ActionCable 6.1 (Debian bookworm's ruby-actioncable) served by puma
#   - faye (npm) Bayeux server, into tests/servers/faye/node_modules
#   - cometd-nodejs-server (npm; the CometD project's own Node.js server, with its ack
#     extension), into tests/servers/cometd/node_modules
#   - Debian's redis-server (the tests start their own on a free port; no service is enabled)
#   - Debian's microsocks, a SOCKS5 server (the tests start their own on a free port)
# Idempotent; quick when everything is already there. Run as root (CI does).
# Downloads only from Debian apt and the npm registry.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FAYE_DIR="$ROOT/tests/servers/faye"
COMETD_DIR="$ROOT/tests/servers/cometd"
export DEBIAN_FRONTEND=noninteractive

log() { echo "[install-servers] $*"; }

SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
fi

# --- Debian packages -------------------------------------------------------
# ruby-actioncable pulls ruby-actionpack, ruby-activesupport, ruby-nio4r,
# ruby-websocket-driver, ruby-rack, ruby-concurrent; puma is the web server.
# redis-server: the leases, streams and Celery broker of the replica tests (started by the tests).
# microsocks: a real SOCKS5 server (with user/password) for the websocket's SOCKS tests.
APT_PKGS=(ruby ruby-actioncable ruby-rack ruby-nio4r ruby-websocket-driver puma redis-server microsocks)
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  APT_PKGS+=(nodejs npm)
fi

missing=()
for p in "${APT_PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    # node/npm may be present outside dpkg (e.g. a preinstalled toolchain)
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  log "apt packages missing: ${missing[*]}"
  # apt-get update only when the package lists are absent or the install fails
  if ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 \
     || ! apt-cache show ruby-actioncable >/dev/null 2>&1; then
    log "apt-get update"
    $SUDO apt-get update -q
  fi
  if ! $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"; then
    log "install failed, retrying after apt-get update"
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
else
  log "apt packages already installed"
fi

# sanity check: the gems load
if ! ruby -e 'require "action_cable"; require "puma"' >/dev/null 2>&1; then
  log "ERROR: ruby cannot load action_cable/puma" >&2
  ruby -e 'require "action_cable"; require "puma"' || true
  exit 1
fi
command -v puma >/dev/null || { log "ERROR: puma executable not found" >&2; exit 1; }

# --- faye (npm) -----------------------------------------------------------
if [ -f "$FAYE_DIR/node_modules/faye/package.json" ] \
   && [ -f "$FAYE_DIR/node_modules/.package-lock.json" ] \
   && [ "$FAYE_DIR/node_modules/.package-lock.json" -nt "$FAYE_DIR/package.json" ] \
   && { [ ! -f "$FAYE_DIR/package-lock.json" ] \
        || [ ! "$FAYE_DIR/package-lock.json" -nt "$FAYE_DIR/node_modules/.package-lock.json" ]; } \
   && node -e 'require(process.argv[1])' "$FAYE_DIR/node_modules/faye" >/dev/null 2>&1; then
  log "faye already installed"
else
  log "npm install in $FAYE_DIR"
  cd "$FAYE_DIR"
  if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
  else
    npm install --no-audit --no-fund --loglevel=error
  fi
fi

# --- cometd-nodejs-server (npm) ----------------------------------------------
if [ -f "$COMETD_DIR/node_modules/cometd-nodejs-server/package.json" ] \
   && [ -f "$COMETD_DIR/node_modules/.package-lock.json" ] \
   && [ ! "$COMETD_DIR/package-lock.json" -nt "$COMETD_DIR/node_modules/.package-lock.json" ] \
   && node -e 'require(process.argv[1])' "$COMETD_DIR/node_modules/cometd-nodejs-server" >/dev/null 2>&1; then
  log "cometd-nodejs-server already installed"
else
  log "npm ci in $COMETD_DIR"
  (cd "$COMETD_DIR" && npm ci --no-audit --no-fund --loglevel=error)
fi

log "ruby $(ruby -e 'print RUBY_VERSION'), actioncable $(ruby -e 'require "action_cable"; print ActionCable.version'), puma $(ruby -e 'require "puma"; print Puma::Const::PUMA_VERSION'), node $(node --version), faye $(node -p 'require(process.argv[1]+"/node_modules/faye/package.json").version' "$FAYE_DIR")"
