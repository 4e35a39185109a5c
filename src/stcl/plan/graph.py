"""The jobs of the workflow, read from Snakemake's own DAG: `stcl plan` projects them and
workflow/generate.py writes dvc.yaml from them, so neither keeps a second copy of the stage graph.

`snakemake_jobs` builds the DAG of the given targets (default: the default target) as
``snakemake -n [--forceall]`` would and returns its jobs in dependency order, each with what its rule
declares of itself (`RuleMeta`, next to the rule in workflow/rules/*.smk: its kind, the DVC stage and the
plan row its jobs share). The jobs are those of the local profile (its global ``resources``: no GPU, one
node), so a training job's command is one plain ``stcl train`` process. `graph_workdir` gives
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
from typing import Any, Literal

import yaml

__all__ = ["RuleMeta", "Job", "snakemake_jobs", "graph_workdir", "local_resources"]

# Where a workflow's local profile lives, relative to the Snakefile's folder.
LOCAL_PROFILE = Path("workflow/profiles/local/config.yaml")


@dataclass(frozen=True)
class RuleMeta:
    """What a rule declares of itself, once, next to the rule (``describe(...)`` in workflow/rules/*.smk).

    * ``kind``: what a job of the rule needs: "train" (a training stage, GPUs), "infer" (sharded GPU
      inference: the rule named after its params section, ``infer`` or ``pseudo_label``), "flow" (RAFT
      for TC, one GPU job) or "cpu" (everything else, ``mkdir`` included);
    * ``dvc_stage``: the DVC stage the jobs of several rules share (a ``str.format`` template of the
      wildcards), because they write into one folder that DVC can only track as one stage's output;
      None: one stage per job, ``<rule>[-<wildcard values>]``;
    * ``plan_row``: the `stcl plan` row its jobs share (a template likewise); None: one row per job;
    * ``splits``: the VSPW splits whose frames a job reads, listed by the plan for a CPU job.

    Not a ``params:`` entry: Snakemake records every params value of a job for its ``params`` rerun trigger,
    so values that say nothing about the job's result would rerun every finished job once when added, and
    a job again whenever its rule's grouping changed. Snakemake has no other per-rule field for such data.
    """

    kind: Literal["train", "infer", "flow", "cpu"]
    dvc_stage: str | None = None
    plan_row: str | None = None
    splits: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("train", "infer", "flow", "cpu"):
            raise ValueError(f"RuleMeta kind must be train, infer, flow or cpu, got {self.kind!r}")


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
    kind: str  # RuleMeta.kind of its rule
    dvc_stage: str  # the DVC stage it belongs to (RuleMeta.dvc_stage, or its own name)
    plan_row: str  # the `stcl plan` row it belongs to (RuleMeta.plan_row, or its own name)
    splits: list[str]  # RuleMeta.splits

    @property
    def name(self) -> str:
        """The job's own name: its rule, then its wildcard values."""
        return "-".join([self.rule, *self.wildcards.values()])

    @classmethod
    def of(cls, job: Any, info: RuleMeta) -> "Job":
        shell = " ".join((job.shellcmd or "").split())
        for log in job.log:
            shell = shell.replace(f" > {shlex.quote(str(log))} 2>&1", "")
        reads = job.params.reads if "reads" in job.params.keys() else {}
        wildcards = {k: str(v) for k, v in job.wildcards_dict.items()}
        own = "-".join([job.rule.name, *wildcards.values()])
        return cls(
            rule=job.rule.name,
            wildcards=wildcards,
            inputs=[str(f) for f in job.input],
            outputs=[(_name_of(job.output, f), str(f), _is_report(f)) for f in job.output],
            logs=[str(f) for f in job.log],
            shell=shell,
            params=list(reads),
            kind=info.kind,
            dvc_stage=info.dvc_stage.format(**wildcards) if info.dvc_stage else own,
            plan_row=info.plan_row.format(**wildcards) if info.plan_row else own,
            splits=list(info.splits),
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

    cwd = os.getcwd()
    cpu = ResourceSettings(resources=local_resources(root))
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
            infos = rule_metas(workflow)
            return [Job.of(j, infos[j.rule.name]) for j in jobs]
    finally:
        os.chdir(cwd)


def rule_metas(workflow: Any) -> dict[str, RuleMeta]:
    """{rule: RuleMeta} of every rule of a loaded Snakemake workflow that runs a command (the target rules
    that only name inputs, such as ``all``, run nothing and declare nothing).

    Raises ValueError naming each rule that runs a command but declares no `RuleMeta`, or each name described
    that is no such rule.
    """
    declared = workflow.globals.get("RULE_META", {})
    missing = [r.name for r in workflow.rules if not r.norun and r.name not in declared]
    if missing:
        raise ValueError(f"{', '.join(missing)}: no describe(...) next to the rule (workflow/rules/*.smk)")
    stale = sorted(set(declared) - {r.name for r in workflow.rules if not r.norun})
    if stale:
        raise ValueError(f"{', '.join(stale)}: described (workflow/rules/*.smk) but no rule of that name runs a command")
    return dict(declared)


def local_resources(root: Path) -> dict[str, int]:
    """The global ``resources`` of the workflow's local profile (``gpu: 0``, ``nodes: 1``): what this machine
    offers every job, so the jobs the graph lists are those `snakemake --profile local` runs."""
    profile = yaml.safe_load((root / LOCAL_PROFILE).read_text()) or {}
    return dict(profile.get("resources") or {})


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
