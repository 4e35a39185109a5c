#!/usr/bin/env bash
# Create .venv in the repository and install stcl with what the workflow needs (README command 1);
# `--tests` also installs what the test suite needs (README command 2): pytest and the reference code of the
# equivalence tests (mmsegmentation 1.2.2 and mmcv-lite, never imported by stcl itself).
# Idempotent: a second run with unchanged pyproject.toml/constraints finishes in well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

TESTS=0
case "${1:-}" in
  "") ;;
  --tests) TESTS=1 ;;
  *)
    echo "setup: unknown argument '$1' (usage: bash workflow/setup.sh [--tests])" >&2
    exit 2
    ;;
esac

PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.stcl-setup-stamp             # the workflow's packages are installed for this hash
TESTS_STAMP=$VENV/.stcl-setup-tests-stamp # ... and the test suite's
want=$(cat pyproject.toml workflow/envs/constraints.txt workflow/envs/reference-tests.txt workflow/setup.sh | sha256sum | cut -d' ' -f1)

stamped() { [ -f "$1" ] && [ "$(cat "$1")" = "$want" ]; }

if stamped "$STAMP" && [ -x "$VENV/bin/stcl" ] && { [ "$TESTS" = 0 ] || stamped "$TESTS_STAMP"; }; then
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

if ! stamped "$STAMP" || [ ! -x "$VENV/bin/stcl" ]; then
  echo "setup: installing stcl and pinned dependencies into $VENV (torch==2.14.1, torchvision==0.29.1, ...)"
  rm -f "$TESTS_STAMP"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  # pip byte-compiles in one process; compileall on every core afterwards is the same .pyc files ~20 s sooner
  # on 2 cores. Like pip, it skips files that do not compile (some packages ship such test data).
  "$VENV/bin/python" -m pip install --quiet --no-compile -c workflow/envs/constraints.txt -e '.[workflow,export]'
  "$VENV/bin/python" -m compileall -qq -j 0 "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" || true
  echo "$want" > "$STAMP"
fi
if [ "$TESTS" = 1 ]; then
  # The test runner, and reference code for the model-equivalence tests: mmsegmentation 1.2.2 without its
  # dependencies (they include mmcv with compiled ops), the pure-Python mmcv-lite, and what `import
  # mmseg.models` needs.
  echo "setup: installing the test suite's packages (pytest, mmsegmentation 1.2.2, mmengine, mmcv-lite)"
  "$VENV/bin/python" -m pip install --quiet -c workflow/envs/constraints.txt -e '.[workflow,export,test]'
  "$VENV/bin/python" -m pip install --quiet -c workflow/envs/constraints.txt -r workflow/envs/reference-tests.txt
  "$VENV/bin/python" -m pip install --quiet --no-deps mmsegmentation==1.2.2
  "$VENV/bin/python" -m pip install --quiet --no-deps mmcv-lite==2.1.0 2>/dev/null ||
    "$VENV/bin/python" -m pip install --quiet --no-deps mmcv-lite==2.2.0
  echo "$want" > "$TESTS_STAMP"
fi
echo "setup: done"
