"""Training across nodes: the srun environment → torch.distributed, the params layout check, and the same
training whatever the layout (2 nodes × 1 process = 1 node × 2 processes, bit for bit on CPU/gloo), also
when a preempted job comes back on other nodes.

The layout tests start real processes with the variables srun gives each task (``SLURM_PROCID``,
``SLURM_LOCALID``, ``SLURM_NODEID``, ``SLURM_STEP_NUM_TASKS``, ``SLURM_STEP_NODELIST``, ``SLURM_JOB_ID``);
they find each other through `stcl.train.slurm_env` alone. Node names are loopback addresses so that the
master address resolves on any machine; tests/test_workflow_slurm_nodes.py runs the same through a real
two-node Slurm cluster whose nodes have addresses of their own.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from _process_fixtures import default_sigint, finish

from stcl.params import TRAIN_STAGES, ParamsError, parse_params
from stcl.presets import preset_params, recipe_dict
from stcl.train.slurm_env import first_host, master_port, slurm_rendezvous

TESTS = Path(__file__).parent


# -- the srun environment ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("nodelist", "first"),
    [
        ("node1", "node1"),
        ("gpu[003-004,9],cpu1", "gpu003"),
        ("a1,b[1-2]", "a1"),
        ("rack[2-3]-n[07,09]", "rack2-n07"),
        ("10.0.0.1,10.0.0.2", "10.0.0.1"),
    ],
)
def test_first_host_of_a_slurm_node_list(nodelist, first) -> None:
    assert first_host(nodelist) == first


def test_malformed_node_list_is_refused() -> None:
    with pytest.raises(ValueError, match="malformed"):
        first_host("gpu[1-2")
    with pytest.raises(ValueError, match="empty"):
        first_host(" ")


def test_master_port_depends_on_the_job_and_avoids_ephemeral_ports() -> None:
    ports = {master_port(j) for j in range(1000, 1100)}
    assert len(ports) == 100 and all(15000 <= p < 30000 for p in ports)
    assert master_port(15000 + 7) == master_port(7) == 15007


def _task_env(rank: int, local: int, node: int, nodes: str, tasks: int, job: int) -> dict[str, str]:
    return {
        "SLURM_JOB_ID": str(job),
        "SLURM_STEP_NUM_TASKS": str(tasks),
        "SLURM_PROCID": str(rank),
        "SLURM_LOCALID": str(local),
        "SLURM_NODEID": str(node),
        "SLURM_STEP_NODELIST": nodes,
    }


def test_slurm_task_environment_maps_to_torch_distributed() -> None:
    env = _task_env(rank=9, local=1, node=1, nodes="gpu[07-08]", tasks=16, job=4242)
    assert slurm_rendezvous(env) == {
        "RANK": "9",
        "WORLD_SIZE": "16",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "gpu07",
        "MASTER_PORT": str(15000 + 4242),
    }
    # Values the user exported win; torchrun's RANK means torchrun did the mapping.
    assert slurm_rendezvous({**env, "MASTER_ADDR": "10.1.2.3", "MASTER_PORT": "29500"}).keys() == {
        "RANK", "WORLD_SIZE", "LOCAL_RANK"
    }
    assert slurm_rendezvous({**env, "RANK": "0"}) == {}
    # The batch script and the plugin's one-task steps stay single processes.
    assert slurm_rendezvous({"SLURM_JOB_ID": "5", "SLURM_PROCID": "0", "SLURM_NTASKS": "16"}) == {}
    assert slurm_rendezvous({**env, "SLURM_STEP_NUM_TASKS": "1"}) == {}
    with pytest.raises(ValueError, match="SLURM_PROCID"):
        slurm_rendezvous({**env, "SLURM_PROCID": "x"})


@pytest.mark.parametrize(
    "change, message",
    [
        ({"SLURM_PROCID": None}, "Slurm environment: SLURM_PROCID is not set (a task of a step with several tasks needs it)"),
        ({"SLURM_PROCID": ""}, "Slurm environment: SLURM_PROCID is not set (a task of a step with several tasks needs it)"),
        ({"SLURM_PROCID": "x"}, "Slurm environment: SLURM_PROCID must be an integer, got 'x'"),
        ({"SLURM_LOCALID": "one"}, "Slurm environment: SLURM_LOCALID must be an integer, got 'one'"),
        ({"SLURM_JOB_ID": "12a"}, "Slurm environment: SLURM_JOB_ID must be an integer, got '12a'"),
        ({"SLURM_JOB_ID": None, "SLURM_JOBID": "z"}, "Slurm environment: SLURM_JOBID must be an integer, got 'z'"),
        ({"SLURM_STEP_NUM_TASKS": "2x"}, "Slurm environment: SLURM_STEP_NUM_TASKS must be an integer, got '2x'"),
    ],
)
def test_a_missing_or_malformed_slurm_variable_is_named(change, message) -> None:
    """A missing SLURM_PROCID used to be reported as "SLURM_PROCID/SLURM_LOCALID/SLURM_JOB_ID must be integers"."""
    env = _task_env(rank=1, local=1, node=0, nodes="gpu1", tasks=2, job=7)
    env.update({k: v for k, v in change.items() if v is not None})
    env = {k: v for k, v in env.items() if change.get(k, "") is not None}
    with pytest.raises(ValueError) as err:
        slurm_rendezvous(env)
    assert str(err.value) == message
    # unset optional ones default: SLURM_LOCALID 0, no job id
    base = _task_env(rank=1, local=1, node=0, nodes="gpu1", tasks=2, job=7)
    del base["SLURM_LOCALID"], base["SLURM_JOB_ID"]
    assert slurm_rendezvous(base)["LOCAL_RANK"] == "0" and slurm_rendezvous(base)["MASTER_PORT"] == "15000"


# -- params: the layout must split the global batch exactly ---------------------------------------------------
def _paper(**train_cluster) -> dict:
    data = recipe_dict(preset_params("paper"))
    data["cluster"]["train"].update(train_cluster)
    return data


def test_paper_batch_of_16_on_two_nodes_needs_one_image_per_gpu() -> None:
    with pytest.raises(ParamsError) as err:
        parse_params(_paper(nodes=2), "p.yaml")
    lines = str(err.value).splitlines()
    assert len(lines) == 2, lines
    assert "cluster.train.nodes × cluster.train.gpus × pretrain_coco.batch_per_device = 2 × 8 × 2 = 32" in lines[1]
    assert "pretrain_coco.batch_size = 16" in lines[1]
    data = _paper(nodes=2)
    data["train"]["batch_per_device"] = 1
    for stage in TRAIN_STAGES:
        data[stage].pop("batch_per_device", None)
    p = parse_params(data)
    assert (p.cluster.train.nodes, p.train_stcl.batch_per_device) == (2, 1)
    # 4 nodes × 8 GPUs = 32 processes cannot share 16 images; 4 × 4 GPUs can.
    data["cluster"]["train"].update(nodes=4)
    with pytest.raises(ParamsError, match="4 × 8 × 1 = 32 does not divide"):
        parse_params(data)
    data["cluster"]["train"].update(gpus=4)
    assert parse_params(data).cluster.train.nodes == 4


def test_only_training_runs_across_nodes() -> None:
    data = _paper()
    data["cluster"]["infer"]["nodes"] = 2
    with pytest.raises(ParamsError, match="cluster.infer.nodes must be 1"):
        parse_params(data)
    with pytest.raises(ParamsError, match="cluster.train.nodes = 2 needs cluster.train.gpus >= 1"):
        parse_params(_paper(nodes=2, gpus=0))


# -- the same training whatever the layout ----------------------------------------------------------------
def _free_job_id() -> int:
    """A job id whose rendezvous port (`master_port`) is free on this machine now (drawn from the OS's
    entropy: the global `random` is seeded by in-process training tests, so two test workers would agree)."""
    draw = random.SystemRandom()
    for _ in range(200):
        job = draw.randrange(1, 15000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", master_port(job)))
            except OSError:
                continue
            return job
    raise RuntimeError("no free port in 15000..29999")


def _run_step(out: Path, nodes: list[str], per_node: int, kill_at: int = 0) -> list[int]:
    """Start one task per process as `srun --nodes=len(nodes) --ntasks-per-node=per_node` would; exit codes."""
    job, tasks = _free_job_id(), len(nodes) * per_node
    torch_vars = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    base = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k not in torch_vars}
    base["PYTHONPATH"] = os.pathsep.join([str(TESTS), *sys.path])
    procs = []
    for node, _name in enumerate(nodes):
        for local in range(per_node):
            rank = node * per_node + local  # block distribution
            env = {**base, **_task_env(rank, local, node, ",".join(nodes), tasks, job)}
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(TESTS / "_nodes_fixtures.py"), str(out), str(kill_at)],
                    env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                )
            )
    codes = []
    for p in procs:
        out_text, _ = p.communicate(timeout=300)
        codes.append(p.returncode)
        if p.returncode not in (0, 75):
            pytest.fail(f"task exited {p.returncode}:\n{out_text[-3000:]}")
    return codes


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


def _assert_bit_identical(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs between {a} and {b}"


def _losses(out: Path) -> str:
    return (out / "dvclive/plots/metrics/train/loss.tsv").read_text()


def test_two_nodes_train_exactly_as_one_node_and_resume_on_other_nodes(tmp_path) -> None:
    """2 nodes × 1 process, 1 node × 2 processes, and 2 nodes preempted at iteration 4 then resumed on
    another node × 2: the same losses and weights, bit for bit (CPU/gloo, float32).

    Rank r draws the same samples and dropout masks in every layout (both depend on the global rank only),
    and gloo sums two ranks' gradients in the same order, so the runs agree exactly. On GPUs NCCL picks
    another all-reduce algorithm across nodes than within one (rings or trees over the network vs NVLink);
    with more than two ranks the summation order then differs and results agree to float rounding only.
    """
    two_nodes, one_node, moved = tmp_path / "2x1", tmp_path / "1x2", tmp_path / "moved"
    assert _run_step(two_nodes, ["127.0.0.1", "127.0.0.2"], 1) == [0, 0]
    assert _run_step(one_node, ["127.0.0.1"], 2) == [0, 0]
    _assert_bit_identical(two_nodes / "rank0.pt", two_nodes / "rank1.pt")
    _assert_bit_identical(two_nodes / "rank0.pt", one_node / "rank0.pt")
    _assert_bit_identical(two_nodes / "model.pt", one_node / "model.pt")
    assert _losses(two_nodes) == _losses(one_node)
    assert len(_losses(two_nodes).splitlines()) == 1 + 9  # header + every iteration
    metrics = yaml.safe_load((two_nodes / "train_metrics.json").read_text())
    assert (metrics["world_size"], metrics["grad_accum"], metrics["global_batch"]) == (2, 2, 8)

    # Preempted (SIGTERM on every task, as Slurm sends before requeueing) on two nodes, resumed on one other.
    assert _run_step(moved, ["127.0.0.1", "127.0.0.2"], 1, kill_at=4) == [75, 75]
    assert not (moved / "model.pt").exists()
    assert _run_step(moved, ["127.0.0.3"], 2) == [0, 0]
    _assert_bit_identical(moved / "model.pt", two_nodes / "model.pt")
    assert _losses(moved) == _losses(two_nodes)


# -- the training rule and the pinned Slurm plugin's sbatch line ----------------------------------------------
class _Resources(dict):
    """Snakemake's job.resources as the plugin reads it: `.get(key)` and attribute access."""

    def __getattr__(self, key: str):
        return self[key]


def _dry_run_resources(work: Path, rule: str) -> tuple[dict, str]:
    """The resources and shell command Snakemake's dry run shows for `rule` under the slurm executor."""
    from _workflow_fixtures import SNAKEMAKE, run

    done = run([SNAKEMAKE, "-n", "-p", "--executor", "slurm", "--jobs", "1", f"results/models/{rule}/model.pt"], work)
    out = done.stdout + done.stderr
    block = out[out.index(f"rule {rule}:"):]
    line = next(ln for ln in block.splitlines() if ln.strip().startswith("resources:"))
    res = {}
    for item in line.split("resources:", 1)[1].split(", "):
        key, _, value = item.strip().partition("=")
        res[key] = int(value) if value.isdigit() else value
    shell = next(ln for ln in block.splitlines() if ln.startswith("Shell command: ")).removeprefix("Shell command: ")
    return res, shell


def test_two_node_rule_gives_one_sbatch_with_a_task_per_gpu_and_srun(tmp_path) -> None:
    """cluster.train {gpus: 8, nodes: 2} → the pinned plugin's sbatch flags and the rule's srun line."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    from _workflow_fixtures import small_params, workflow_copy

    stages = {s: {"batch_size": 16, "batch_per_device": 1} for s in TRAIN_STAGES}
    params = small_params({"cluster": {"train": {"gpus": 8, "nodes": 2, "cpus_per_gpu": 6, "mem_mb": 9000}}, **stages})
    work = workflow_copy(tmp_path / "repo", params)
    res, shell = _dry_run_resources(work, "pretrain_coco")
    assert shell.startswith(
        "srun --nodes=2 --ntasks-per-node=8 --cpus-per-task=6 --gres=gpu:8 --kill-on-bad-exit=1 stcl train "
    ), shell

    class Job:
        resources = _Resources(res)
        threads = 48

    job_params = {"run_uuid": "u", "slurm_logfile": "l", "comment_str": "rule_pretrain_coco", "account": "",
                  "partition": "", "workdir": str(work)}
    flags = (get_submit_command(Job(), job_params) + set_gres_string(Job())).split()
    assert {"--nodes=2", "--ntasks-per-node=8", "--cpus-per-gpu=6", "--gres=gpu:8"} <= set(flags), flags
    assert flags[flags.index("--mem") + 1] == "9000"
    assert not [f for f in flags if f.startswith(("--ntasks-per-gpu", "--gpus", "--ntasks="))], flags
    assert "mpi" in Job.resources  # the jobstep plugin then runs the command as is, not under `srun -n1`

    # One GPU per node: the plugin refuses tasks_per_node 1 for mpi jobs, so the rule asks --ntasks=2.
    params["cluster"]["train"].update(gpus=1)
    params.update({s: {"batch_size": 2, "batch_per_device": 1} for s in stages})
    work = workflow_copy(tmp_path / "one", params)
    res, shell = _dry_run_resources(work, "pretrain_coco")
    Job.resources = _Resources(res)
    flags = (get_submit_command(Job(), job_params) + set_gres_string(Job())).split()
    assert {"--nodes=2", "--ntasks=2", "--gres=gpu:1"} <= set(flags), flags
    assert not [f for f in flags if f.startswith(("--ntasks-per-gpu", "--ntasks-per-node"))], flags


# -- a rendezvous that never completes -------------------------------------------------------------------
def _start_ranks(tmp_path: Path, ranks: list[int], world: int, timeout_s: int) -> tuple[list[subprocess.Popen], int]:
    """`stcl train` as tasks `ranks` of a `world`-task srun step on this machine (the others never start)."""
    data = yaml.safe_load((TESTS.parent / "params.yaml").read_text())
    data["cluster"]["train"]["rendezvous_timeout_s"] = timeout_s
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(data))
    job = _free_job_id()
    torch_vars = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TORCHELASTIC_")) and k not in torch_vars}
    argv = [sys.executable, "-m", "stcl", "train", "--stage", "pretrain_coco", "--params", str(params), "--device",
            "cpu", "--coco-semantic", str(tmp_path / "none"), "--out", str(tmp_path / "out")]
    procs = [
        subprocess.Popen(argv, env={**base, **_task_env(r, r, r, "127.0.0.1", world, job)}, cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
        for r in ranks
    ]
    return procs, master_port(job)


def _first_line(proc: subprocess.Popen, timeout: float = 300) -> str:
    """The first stdout line of `proc` (read in a thread, so a process that prints nothing fails the test)."""
    import queue
    import threading

    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        proc.kill()
        pytest.fail("no line before the rendezvous")


def test_ranks_whose_peer_never_starts_say_where_they_wait_then_exit_69(tmp_path) -> None:
    """SLURM_STEP_NUM_TASKS=3, only tasks 0 and 1 start: each prints its line before it waits, then exits 69
    with one line naming the master and the params key once cluster.train.rendezvous_timeout_s has passed."""
    from stcl.exit_codes import EXIT_UNAVAILABLE

    procs, port = _start_ranks(tmp_path, [0, 1], world=3, timeout_s=3)
    for rank, proc in enumerate(procs):
        line = _first_line(proc)
        assert line.startswith(f"stcl train: rank {rank}/3 (local {rank}) on "), line
        assert line.rstrip().endswith(f"master 127.0.0.1:{port}: waiting for the other ranks (at most 3 s)"), line
    for rank, proc in enumerate(procs):
        code, err = finish(proc)
        assert code == EXIT_UNAVAILABLE, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"stcl train: error: rank {rank}: "), lines
        assert f"master 127.0.0.1:{port}" in lines[0] and "within 3 s (cluster.train.rendezvous_timeout_s)" in lines[0]
    assert not (tmp_path / "out").exists()


def test_sigterm_and_ctrl_c_stop_ranks_waiting_in_the_rendezvous(tmp_path) -> None:
    """Ranks waiting for a peer that never comes (timeout 600 s) stop on SIGTERM with 75 and on SIGINT with
    130, as everywhere else; the signal is sent once each has printed its line (it then waits)."""
    from stcl.exit_codes import EXIT_INTERRUPTED, EXIT_PREEMPTED

    procs, _ = _start_ranks(tmp_path, [0, 1], world=3, timeout_s=600)
    for proc in procs:
        assert "waiting for the other ranks" in _first_line(proc)
    for proc, sig, expected in ((procs[1], signal.SIGINT, EXIT_INTERRUPTED), (procs[0], signal.SIGTERM, EXIT_PREEMPTED)):
        proc.send_signal(sig)
        code, err = finish(proc)
        assert code == expected, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
