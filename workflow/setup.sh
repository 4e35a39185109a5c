#!/usr/bin/env bash
# Create .venv in the repository and install stcl with everything the workflow and tests need.
# Idempotent: a second run with unchanged pyproject.toml/constraints finishes in well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.stcl-setup-stamp
want=$(cat pyproject.toml workflow/envs/constraints.txt | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/stcl" ]; then
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $($PY --version)"
  if ! "$PY" -m venv "$VENV" 2>/dev/null; then
    # Debian's python3 without python3-venv: fall back to virtualenv from PyPI.
    rm -rf "$VENV"
    "$PY" -m pip install --user --quiet virtualenv
    "$PY" -m virtualenv --quiet "$VENV"
  fi
fi

echo "setup: installing stcl and pinned dependencies into $VENV (torch==2.14.1, torchvision==0.29.1, ...)"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -c workflow/envs/constraints.txt -e '.[workflow,test]'
echo "$want" > "$STAMP"
echo "setup: done"
