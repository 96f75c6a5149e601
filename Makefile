# thingsd — top-level entry points. CMake does the building; this file only
# strings the steps together so that a fresh Debian 12 machine needs two commands.
#
#   make           build build/thingsd (release, warnings are errors)
#   make run       install missing packages, build, start with demo data (REST on :8080)
#   make test      install missing packages, build plain and ASan/UBSan, run every test
#   make bench     run the benchmarks in bench/ (HTTP, MQTT, live data) and rewrite docs/performance.md
#   make fuzz      build the libFuzzer targets in fuzz/ (clang)

JOBS    ?= $(shell nproc)
PYTEST  ?= /usr/bin/python3 -m pytest
DATA    ?= ./data

.PHONY: all build asan run test unit integration bench fuzz clean deps deps-test

all: build

deps:
	@scripts/deps.sh build

deps-test:
	@scripts/deps.sh test

build: deps
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build build -j $(JOBS)

asan: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTD_SANITIZE=ON >/dev/null
	@cmake --build build-asan -j $(JOBS)

run: build
	./build/thingsd --data-dir $(DATA) --demo

# Unit tests run in both builds; the integration suite runs against the
# sanitizer build (so every request path is checked by ASan/UBSan) and then
# against the release build.
test: deps-test build asan
	cd build && ctest --output-on-failure -j $(JOBS)
	cd build-asan && ctest --output-on-failure -j $(JOBS)
	THINGSD_BIN=$(CURDIR)/build-asan/thingsd $(PYTEST) -q tests/integration
	THINGSD_BIN=$(CURDIR)/build/thingsd $(PYTEST) -q tests/integration

unit: build
	cd build && ctest --output-on-failure -j $(JOBS)

integration: build
	THINGSD_BIN=$(CURDIR)/build/thingsd $(PYTEST) -q tests/integration

bench: build
	@scripts/deps.sh bench
	bench/run.sh
	bench/mqtt_run.sh
	bench/live_run.sh

fuzz: deps
	@cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DTD_FUZZ=ON >/dev/null
	@cmake --build build-fuzz -j $(JOBS)

clean:
	rm -rf build build-asan build-fuzz
