"""A training stage as one 2-node Slurm job: a real cluster of two slurmd in two network namespaces
(tests/_slurm_nodes_harness.py), the slurm profile, `srun` with one task per (fake) GPU, gloo between the
nodes' own addresses."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from _slurm_nodes_harness import NodesCluster, nodes_unavailable_reason
from _workflow_fixtures import BIN, SNAKEMAKE, run, small_params, workflow_copy
from stcl.params import TRAIN_STAGES

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("slurm")]  # one cluster at a time: one worker runs both Slurm modules

FAST_STATUS = ["--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2"]
STAGES = TRAIN_STAGES


@pytest.fixture(scope="module")
def cluster(module_tmp):
    reason = nodes_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with NodesCluster(module_tmp("slurm-nodes"), nodes=2, gpus_per_node=1) as c:
        yield c


def _jobs(cluster) -> list[dict[str, str]]:
    """Every job Slurm still remembers (MinJobAge), as `scontrol -o show job` fields."""
    out = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True, env=cluster.env(), check=True)
    return [dict(f.split("=", 1) for f in line.split() if "=" in f) for line in out.stdout.splitlines() if line.strip()]


def test_training_stage_runs_as_one_two_node_job(cluster, tmp_path):
    """`cluster.train.nodes: 2`: pretrain_coco is one sbatch job on both nodes, two ranks that meet over the
    namespaces' addresses; the CPU jobs before it stay on one node. Then the stage once more as 1 node × 2
    processes: the same losses and weights, bit for bit (CPU/gloo; rank r sees the same samples either way)."""
    # Global batch 4 = 2 ranks × 2 (UperNet's BatchNorm needs 2 samples per process without SyncBatchNorm).
    layout = {s: {"batch_size": 4, "batch_per_device": 2} for s in STAGES}
    params = small_params({"cluster": {"train": {"nodes": 2, "gpus": 1, "cpus_per_gpu": 1}}, **layout})
    work = workflow_copy(tmp_path / "repo", params)
    run([SNAKEMAKE, "--profile", "slurm", "results/models/pretrain_coco/model.pt", *FAST_STATUS], work, env=cluster.env())

    assert (work / "results/models/pretrain_coco/model.pt").is_file()
    metrics = json.loads((work / "results/models/pretrain_coco/train_metrics.json").read_text())
    assert (metrics["world_size"], metrics["grad_accum"], metrics["global_batch"]) == (2, 1, 4), metrics
    log = (work / "results/logs/pretrain_coco.log").read_text()
    # Rank 1 runs in the other namespace, whose loopback is its own: it met rank 0 at stcln1's address.
    assert "stcl train: rank 0/2 (local 0) on stcln1, master stcln1:" in log, log[-3000:]
    assert "stcl train: rank 1/2 (local 0) on stcln2, master stcln1:" in log, log[-3000:]
    assert "pretrain_coco done: 4 iterations" in log, log[-3000:]

    jobs = _jobs(cluster)
    train = [j for j in jobs if "pretrain_coco" in j.get("Comment", "")]
    assert len(train) == 1, jobs
    t = train[0]
    assert (t["NumNodes"], t["NodeList"], t["NumTasks"], t["TresPerNode"]) == ("2", "stcln[1-2]", "2", "gres:gpu:1"), t
    assert t["JobState"] == "COMPLETED", t
    others = [j for j in jobs if j is not t and j.get("JobState") == "COMPLETED"]
    assert others and all(j["NumNodes"] == "1" for j in others), others

    # The same stage as 1 node × 2 processes (torchrun, no Slurm): the same losses and weights, bit for bit.
    one = work / "one_node"
    run(
        [str(BIN / "torchrun"), "--standalone", "--nproc-per-node", "2", "-m", "stcl", "train", "--params", "params.yaml",
         "--stage", "pretrain_coco", "--coco", "data/coco", "--coco-semantic", "results/prepare/coco_semantic",
         "--out", str(one)],
        work,
    )
    curve = "dvclive/plots/metrics/train/loss.tsv"
    two_nodes_loss = (work / "results/models/pretrain_coco" / curve).read_text()
    assert (one / curve).read_text() == two_nodes_loss
    a = torch.load(work / "results/models/pretrain_coco/model.pt", weights_only=True)["state_dict"]
    b = torch.load(one / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    diff = max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a)
    print(f"pretrain_coco, 2 nodes × 1 vs 1 node × 2: losses {two_nodes_loss.split()[3::2]}, max |Δweight| {diff}",
          file=sys.stderr)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
