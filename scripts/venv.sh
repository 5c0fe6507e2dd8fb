# Sourced by scripts/serve and scripts/test: create .venv and install a lock file
# into it, skipping the install when the lock file has not changed since last time.
ensure_venv() {
  local lock=$1
  local python=${PYTHON:-python3}
  if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
  fi
  local stamp=.venv/.installed-$(basename "$lock")
  local want
  want=$(cat "$lock" pyproject.toml | sha256sum | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check --require-hashes -r "$lock"
    .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
    echo "$want" > "$stamp"
  fi
  # bytecode for the source tree, as installing a package writes it: where PYTHONDONTWRITEBYTECODE
  # is set, each `cargohold` command would otherwise compile its modules again (~70 ms)
  .venv/bin/python -m compileall -q src
}
