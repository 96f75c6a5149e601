"""conftest.py — fixtures that run the real thingsd for the integration suite.

  server        module-scoped --demo server (tests in one file share it; they
                create uniquely named entities so they do not interfere)
  make_server   factory for fresh servers (own data dir, optional env), stopped
                after the test; use it for restart/durability/config tests

Every server is stopped with SIGTERM and must exit 0 (SIGKILL after a
deadline, then the teardown fails). When a test fails, the log (stderr) of
every server that was running or started during it is attached to the report.
"""
import shutil

import pytest

import tdlib


@pytest.fixture(scope="module")
def server():
    s = tdlib.Server(demo=True)
    try:
        s.start()
        yield s
    finally:
        s.stop()


@pytest.fixture
def make_server():
    made = []

    def factory(demo=True, env=None, args=None, start=True):
        s = tdlib.Server(demo=demo, env=env, args=args)
        made.append(s)
        if start:
            s.start()
        return s
    yield factory
    errors = []
    for s in made:
        try:
            s.stop()
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n\n".join(errors)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_setup(item):
    item._td_first_server = len(tdlib.ALL_SERVERS)
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    first = getattr(item, "_td_first_server", len(tdlib.ALL_SERVERS))
    seen = set()
    for i, s in enumerate(tdlib.ALL_SERVERS):
        if id(s) in seen:
            continue
        if i >= first or s.alive() or s in getattr(item, "funcargs", {}).values():
            seen.add(id(s))
            rep.sections.append(("thingsd log %s (%s)" % (s.base, s.log_path), s.log_tail(300)))


def pytest_sessionfinish(session, exitstatus):
    for s in tdlib.ALL_SERVERS:
        if s.alive():
            s.kill9()
    if exitstatus == 0:
        shutil.rmtree(tdlib.RUN_TMP, ignore_errors=True)
    else:
        print("\nthingsd data dirs and logs kept under %s" % tdlib.RUN_TMP)
