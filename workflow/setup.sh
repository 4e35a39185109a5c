#!/usr/bin/env bash
# Create .venv in the repository and install stcl with everything the workflow and tests need.
# Idempotent: a second run with unchanged pyproject.toml/constraints finishes in well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.stcl-setup-stamp
want=$(cat pyproject.toml workflow/envs/constraints.txt workflow/envs/reference-tests.txt workflow/setup.sh | sha256sum | cut -d' ' -f1)

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
"$VENV/bin/python" -m pip install --quiet -c workflow/envs/constraints.txt -e '.[workflow,test,export]'
# Reference code for the model-equivalence tests: mmsegmentation 1.2.2 without its dependencies (they
# include mmcv with compiled ops), the pure-Python mmcv-lite, and what `import mmseg.models` needs.
echo "setup: installing the reference packages for the equivalence tests (mmsegmentation 1.2.2, mmengine, mmcv-lite)"
"$VENV/bin/python" -m pip install --quiet -c workflow/envs/constraints.txt -r workflow/envs/reference-tests.txt
"$VENV/bin/python" -m pip install --quiet --no-deps mmsegmentation==1.2.2
"$VENV/bin/python" -m pip install --quiet --no-deps mmcv-lite==2.1.0 2>/dev/null ||
  "$VENV/bin/python" -m pip install --quiet --no-deps mmcv-lite==2.2.0
echo "$want" > "$STAMP"
echo "setup: done"
