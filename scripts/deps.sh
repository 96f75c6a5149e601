#!/usr/bin/env bash
# Installs the Debian packages thingsd needs to build, test and benchmark.
# As root it runs apt-get; otherwise it prints the apt-get line and fails.
set -euo pipefail
what=${1:-build}
pkgs=(build-essential cmake pkg-config clang libclang-rt-14-dev
      libuv1-dev libjansson-dev libsqlite3-dev libssl-dev libcrypt-dev libyaml-dev
      node-llhttp libcmocka-dev sqlite3 libjemalloc-dev)
if [ "$what" = test ] || [ "$what" = bench ]; then
  pkgs+=(python3 python3-pytest python3-requests python3-websocket python3-paho-mqtt
         mosquitto-clients procps)
fi
if [ "$what" = bench ]; then
  pkgs+=(wrk mosquitto libwslay-dev)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages; install them with:" >&2
  echo "  sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
