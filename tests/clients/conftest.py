"""Fixtures for the client matrix: the integration tests' own (cluster, direct,
pglease factory, time limit, log-on-failure), loaded from ../integration so
both suites start PostgreSQL and pglease the same way."""
import importlib.util
import os
import sys

INTEGRATION = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration")
sys.path.insert(0, os.path.abspath(INTEGRATION))

_spec = importlib.util.spec_from_file_location("integration_conftest", os.path.join(INTEGRATION, "conftest.py"))
_it = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_it)

# Fixtures and hooks are found by name in this module.
cluster = _it.cluster
direct = _it.direct
pglease = _it.pglease
pglease_bin = _it.pglease_bin
_time_limit = _it._time_limit
pytest_configure = _it.pytest_configure
pytest_runtest_makereport = _it.pytest_runtest_makereport
