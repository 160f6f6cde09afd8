# Sourced by bin/test after bin/_env.sh: the tools only the tests use, installed on first use.
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
export PATH="$ROOT/node_modules/.bin:$PATH"
