#!/usr/bin/env bash
# The appliance's main job, offline: one spoken turn against the bundled emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/appliance demo "$@"
