#!/usr/bin/env bash
# Everything the tests need, then the whole suite.  Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh test
printf 'test.sh: running the tests (a few minutes; tests/unit alone takes seconds)\n' >&2
exec .venv/bin/python -m pytest "$@"
