"""workflow/setup.sh and the README's two commands: command 1 installs the workflow's packages, command 2 (what
.ci/run runs) adds the test suite's with `--tests`; an unknown argument is refused before anything is installed."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = text.split("## The two commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_commands_and_ci_run():
    one, two = _readme_commands()
    assert one == "bash workflow/setup.sh && .venv/bin/snakemake --profile local"
    assert two == "bash workflow/setup.sh --tests && .venv/bin/python -m pytest"
    lines = (REPO / ".ci" / "run").read_text().splitlines()
    ci = [line for line in lines if line and not line.startswith(("#", "set ", "cd "))]
    assert ci == [two]


def test_unknown_argument_is_one_line_and_exit_2(tmp_path):
    before = sorted(p.name for p in (REPO / ".venv").iterdir()) if (REPO / ".venv").is_dir() else None
    out = subprocess.run(["bash", str(REPO / "workflow" / "setup.sh"), "--test"], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines() == ["setup: unknown argument '--test' (usage: bash workflow/setup.sh [--tests])"]
    after = sorted(p.name for p in (REPO / ".venv").iterdir()) if (REPO / ".venv").is_dir() else None
    assert after == before
