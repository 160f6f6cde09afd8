# Sourced by bin/demo and bin/test: create .venv on first use and (re)install the project
# whenever pyproject.toml changes. Python 3.11 is all it needs (torch wheels on disk are cp311): no root,
# no system package, no Node. What only the tests need is installed by bin/_test_tools.sh.
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
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
