#!/usr/bin/env bash
# dev-cc.sh OUT SRC... — compile a few sources (plus src/base) into one test
# binary with the project's flags, without building the whole tree. For
# working on one module while others are unfinished. Add -DTD_SANITIZE=1 via
# DEVCC_SAN=1 for ASan/UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$1; shift
pkgs="libuv jansson sqlite3 openssl yaml-0.1 libcrypt cmocka"
san=""
[ "${DEVCC_SAN:-0}" = 1 ] && san="-fsanitize=address,undefined -fno-omit-frame-pointer -DTD_DEBUG=1"
mkdir -p "$(dirname "$out")"
gcc -std=c11 -g -O1 -D_GNU_SOURCE -Isrc -I/usr/share/include/llhttp $san \
  -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers -Wshadow \
  -Wpointer-arith -Wstrict-prototypes -Wvla \
  $(pkg-config --cflags $pkgs) "$@" src/base/*.c -o "$out" \
  $(pkg-config --libs $pkgs) -lpthread -lm
