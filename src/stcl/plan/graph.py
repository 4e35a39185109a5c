"""The jobs of the workflow, read from Snakemake's own DAG: `stcl plan` projects them and
workflow/generate.py writes dvc.yaml from them, so neither keeps a second copy of the stage graph.

`snakemake_jobs` builds the DAG of the given targets (default: the default target) as
``snakemake -n [--forceall]`` would and returns its jobs in dependency order. `graph_workdir` gives
`stcl plan` a place to build the DAG of any params file before the data exists: a scratch folder where
the dataset roots params names (relative paths) exist as empty folders, so that Snakemake's check for
missing inputs passes; the jobs, their commands and paths are those of the real working folder.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Job", "snakemake_jobs", "graph_workdir"]


@dataclass
class Job:
    """What dvc.yaml, the plan and the tests need of one Snakemake job."""

    rule: str
    wildcards: dict[str, str]
    inputs: list[str]
    outputs: list[tuple[str | None, str, bool]]  # (output name, path, marked report())
    logs: list[str]
    shell: str  # without the log redirection
    params: list[str]  # the keys of `params: reads=`

    @classmethod
    def of(cls, job: Any) -> "Job":
        shell = " ".join((job.shellcmd or "").split())
        for log in job.log:
            shell = shell.replace(f" > {shlex.quote(str(log))} 2>&1", "")
        reads = job.params.reads if "reads" in job.params.keys() else {}
        return cls(
            rule=job.rule.name,
            wildcards={k: str(v) for k, v in job.wildcards_dict.items()},
            inputs=[str(f) for f in job.input],
            outputs=[(_name_of(job.output, f), str(f), _is_report(f)) for f in job.output],
            logs=[str(f) for f in job.log],
            shell=shell,
            params=list(reads),
        )


def _name_of(namedlist: Any, item: Any) -> str | None:
    for name, value in namedlist.items():
        if value is item or (isinstance(value, str) and value == item):
            return name
    return None


def _is_report(f: Any) -> bool:
    flags = getattr(f, "flags", {}) or {}
    return "report" in flags


def snakemake_jobs(
    root: Path,
    targets: tuple[str, ...] = (),
    forceall: bool = True,
    configfile: Path | None = None,
    workdir: Path | None = None,
) -> list[Job]:
    """The jobs of ``targets`` (default: the default target) in dependency order, from Snakemake's own DAG.

    Args:
        root: folder of the Snakefile (and the working folder unless ``workdir`` is given).
        targets: rules or files to build.
        forceall: every job; False: only the jobs Snakemake would run now (``snakemake -n``).
        configfile: the params file (``--configfile``); default: the workflow's params.yaml.
        workdir: where Snakemake resolves relative paths (default ``root``).

    The working directory is restored afterwards.
    """
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, Quietness, ResourceSettings

    from stcl.params import TRAIN_STAGES

    cwd = os.getcwd()
    cpu = ResourceSettings(overwrite_resources={stage: {"gpu": 0, "nodes": 1} for stage in TRAIN_STAGES})
    config = ConfigSettings(configfiles=[Path(configfile).resolve()] if configfile else [])
    try:
        with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
            workflow_api = api.workflow(
                resource_settings=cpu, config_settings=config, snakefile=root / "Snakefile", workdir=workdir or root
            )
            workflow_api.dag(DAGSettings(targets=set(targets), forceall=forceall))
            workflow = workflow_api._workflow  # noqa: SLF001 (the DAG's jobs have no public accessor)
            workflow._prepare_dag(forceall=forceall, ignore_incomplete=True, lock_warn_only=True, nolock=True)
            workflow._build_dag()
            dag = workflow.dag
            run = set(dag.needrun_jobs())
            jobs = []
            for level in dag.toposorted():
                level = [j for j in level if not j.is_norun and j in run]
                jobs += sorted(level, key=lambda j: (j.rule.name, str(j.wildcards_dict)))
            return [Job.of(j) for j in jobs]
    finally:
        os.chdir(cwd)


@contextlib.contextmanager
def graph_workdir(roots: list[Path]) -> Iterator[Path]:
    """A scratch working folder holding an empty folder at each relative path of ``roots`` (dataset roots, and
    the RAFT file of the `flow` job: Snakemake only checks that an input exists).

    Raises FileNotFoundError naming an absolute path that does not exist (it cannot be stood in for).
    """
    missing = [str(r) for r in roots if r.is_absolute() and not r.exists()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)}: not found (a dataset root or file named in the params file)")
    with tempfile.TemporaryDirectory(prefix="stcl-plan-") as tmp:
        for r in roots:
            if not r.is_absolute():
                (Path(tmp) / r).mkdir(parents=True, exist_ok=True)
        yield Path(tmp)
