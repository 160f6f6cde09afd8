# Sourced by bin/demo and bin/test: create .venv on first use and (re)install the project
# whenever pyproject.toml changes. Python 3.11 is required (torch wheels on disk are cp311).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON_311="${SCONES_PYTHON:-$(command -v python3.11 || true)}"
if [ -z "$PYTHON_311" ]; then
  echo "error: python3.11 not found; install it or set SCONES_PYTHON to a Python 3.11 interpreter" >&2
  exit 2
fi
stamp="$VENV/.installed-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setting up $VENV (first run installs torch from local wheels: a few minutes)" >&2
  [ -x "$VENV/bin/python" ] || "$PYTHON_311" -m venv "$VENV"
  # (this machine's pip config names local wheel folders that lack some packages: drop those warnings)
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q -e "$ROOT[dev]" \
    2> >(grep -v "^WARNING: Location .* is ignored" >&2)
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
# The browser the report tests render pages with (tests/conftest.py): Debian's chromium, installed as root
# on first use when missing (Playwright's own browser download is not reachable here).
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing chromium with apt-get (first run on this machine)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
    (DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null)
fi
# The lint stage's Node tools (package.json: asl-validator), installed from the lockfile whenever it changes.
node_stamp="$ROOT/node_modules/.installed-$(sha256sum "$ROOT/package-lock.json" | cut -c1-16)"
if [ ! -f "$node_stamp" ]; then
  if ! command -v npm >/dev/null; then
    echo "error: npm not found; install Node.js (apt-get install nodejs npm): the lint stage needs asl-validator" >&2
    exit 2
  fi
  echo "installing the Node tools of package-lock.json into $ROOT/node_modules" >&2
  (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error >&2)
  touch "$node_stamp"
fi
export PATH="$VENV/bin:$ROOT/node_modules/.bin:$PATH"
cd "$ROOT"
