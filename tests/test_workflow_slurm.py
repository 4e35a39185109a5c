"""The workflow on a real single-node Slurm cluster (tests/_slurm_harness.py), through the slurm profile."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import pytest

from _slurm_harness import SlurmCluster, unavailable_reason
from _workflow_fixtures import REPO, SNAKEMAKE, run, small_params, workflow_copy, write_params
from stcl.params import TRAIN_STAGES

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("slurm")]  # one cluster at a time: one worker runs both Slurm modules

# Poll quickly: the plugin waits 40 s before its first status query by default.
FAST_STATUS = ["--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2"]


@pytest.fixture(scope="module")
def cluster(module_tmp):
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with SlurmCluster(module_tmp("slurm"), gpus=2) as c:
        yield c


PROBE = """
configfile: "params.yaml"


include: "{common}"


rule all:
    input:
        expand("probe/{{i}}.txt", i=range(2)),


rule probe:
    output:
        "probe/{{i}}.txt",
    resources:
        **cluster_resources("train"),
    params:
        launch=train_launcher,
    shell:
        "echo \\"$SLURM_JOB_ID|${{{{CUDA_VISIBLE_DEVICES:-}}}}|{{params.launch}}\\" >> calls.txt && touch {{output}}"
"""


def test_two_gpu_training_job_runs_its_command_once(cluster, tmp_path):
    """A `gpu: 2` training rule: one command per job (no --ntasks-per-gpu), both GPUs, torchrun with 2."""
    one_each = {stage: {"batch_per_device": 1} for stage in TRAIN_STAGES}
    write_params(tmp_path / "params.yaml", small_params({"cluster": {"train": {"gpus": 2, "cpus_per_gpu": 1}}, **one_each}))
    (tmp_path / "Snakefile").write_text(PROBE.format(common=REPO / "workflow/rules/common.smk"))
    run([SNAKEMAKE, "--profile", str(REPO / "workflow/profiles/slurm"), *FAST_STATUS], tmp_path, env=cluster.env())
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert len(calls) == 2, calls  # two jobs, each ran the command once
    job_ids = {c.split("|")[0] for c in calls}
    assert len(job_ids) == 2 and all(j.isdigit() for j in job_ids), calls
    for call in calls:
        _, gpus, launch = call.split("|")
        assert gpus == "0,1", call
        assert launch == "torchrun --standalone --nproc-per-node 2 -m stcl", call


def test_chain_on_slurm_builds_the_submission(cluster, tmp_path):
    """`snakemake --profile slurm results/test_submission.zip` as the README says, from the repo root."""
    work = workflow_copy(tmp_path / "repo", small_params({"infer": {"shards": 2}}))
    start = time.time()
    out = run([SNAKEMAKE, "--profile", "slurm", "results/test_submission.zip", *FAST_STATUS], work, env=cluster.env())
    print(f"chain on Slurm: {time.time() - start:.0f} s")
    # The plan of every job is printed first (the Snakefile's onstart, before any job is scheduled).
    assert "stcl plan:" in out.stdout and "train_stcl" in out.stdout, out.stdout[:3000]
    # Test inference ran as two shard jobs writing one prediction folder, then a gather.
    records = sorted(p.name for p in (work / "results/infer/test").glob("*.json"))
    assert records == ["0-of-2.json", "1-of-2.json"], records
    assert (work / "results/infer/test.json").is_file()
    with zipfile.ZipFile(work / "results/test_submission.zip") as zf:
        names = zf.namelist()
    pngs = [n for n in names if n.endswith(".png")]
    assert pngs and all(n.count("/") == 1 for n in pngs), names[:5]
    test_videos = (work / "data/VSPW_480p/test.txt").read_text().split()
    assert {n.split("/")[0] for n in pngs} == set(test_videos)
    # Training ran as Slurm GPU jobs through torchrun (fake GPUs: the engine falls back to CPU).
    assert (work / "results/models/train_student/model.pt").exists()
