"""The pinned float32 arithmetic gives the committed bits, on this machine as on the machines measured.

`stcl.numerics` caps oneDNN, MKL and ATen at their AVX2 kernels so that every x86-64 machine with AVX2 runs
the same arithmetic. These tests hold that promise to numbers measured on real machines
(``tests/data/numerics/``: one JSON per machine, written by ``python -m stcl.numerics_digests``):

- the digests of each kernel family training uses (`stcl.numerics_digests.op_digests`, 1 and 2 threads)
  must equal those of every measured machine;
- 4 iterations of the default ``pretrain_coco`` (the repository's params.yaml, the embedded synthetic data,
  2 threads) must give the committed weights digest.

Both run in a fresh process under the pinned setting exactly as ``stcl`` applies it: the pinned variables,
``STCL_PORTABLE_NUMERICS`` and the thread variables of the calling environment are removed first. So on a
machine of another kind (an AVX-512 or AMX CPU, an Intel one) the test checks the pinned setting there, and
a failure there is the signal it exists for: the pin does not make that machine equal to the measured ones.
A torch other than the committed version (setup.sh pins it), or a CPU without AVX2, fails too; the
message names the machine, the torch and the ops that differ.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stcl import numerics
from stcl.numerics_digests import compare, tensor_digests, weights_digest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "numerics"
PRETRAIN = DATA / "pretrain_coco_4_iters.json"
MACHINES = sorted(p for p in DATA.glob("*.json") if p != PRETRAIN)  # one per machine: python -m stcl.numerics_digests
# what the calling environment may have set that changes the arithmetic: removed before each measurement
CLEARED = {*numerics.PORTABLE, numerics.ENV, "OMP_NUM_THREADS", "MKL_NUM_THREADS", "MKL_DYNAMIC",
           "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR", "DNNL_MAX_CPU_ISA"}
# the sections of params.yaml a pretrain_coco run reads (data, model, training): its digest is committed too
PRETRAIN_SECTIONS = ("synth", "data", "clips", "augment", "model", "train", "pretrain_coco")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**env, **extra}


def _measure(*args: str, **extra_env: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "stcl.numerics_digests", "--out", "-", *args],
                          env=_env(**extra_env), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _machines() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in MACHINES}


def _describe(info: dict) -> str:
    return (f"{info['cpu']} {info.get('cpu_family_model_stepping', '')} flags {' '.join(info['cpu_flags'])}, "
            f"ATen {info['aten_capability']}, torch {info['torch']}")


def test_the_measured_machines_agree_under_the_pinned_setting():
    machines = _machines()
    assert len(machines) >= 2, f"digests of at least two machines are committed under {DATA}"
    names = sorted(machines)
    first = machines[names[0]]
    for name in names:
        info = machines[name]["info"]
        assert info["env"]["ONEDNN_MAX_CPU_ISA"] == numerics.PORTABLE["ONEDNN_MAX_CPU_ISA"], name
        assert info["env"]["MKL_CBWR"] == numerics.PORTABLE["MKL_CBWR"], name
        assert info["env"]["ATEN_CPU_CAPABILITY"] == numerics.PORTABLE["ATEN_CPU_CAPABILITY"], name
        shared = {k: v for k, v in first["digests"].items() if k in machines[name]["digests"]}
        assert len(shared) >= 98, f"{name} and {names[0]} share too few ops to compare"  # the first set: 49 × 2
        differ = compare(shared, machines[name]["digests"])
        assert not differ, f"{name} and {names[0]} differ in {differ}"
        models = set(first.get("model_digests", {})) & set(machines[name].get("model_digests", {}))
        assert {m: first["model_digests"][m] for m in models} == {m: machines[name]["model_digests"][m] for m in models}


def test_op_digests_of_this_machine_equal_the_committed_ones():
    mine = _measure()
    assert mine["info"]["env"]["ONEDNN_MAX_CPU_ISA"] == "AVX2"  # the pin was applied by stcl.numerics
    machines = _machines()
    # every op measured here is committed for some machine (files measured before an op was added lack it)
    assert set(mine["digests"]) == set().union(*(m["digests"] for m in machines.values()))
    for name, theirs in machines.items():
        differ = compare({k: v for k, v in mine["digests"].items() if k in theirs["digests"]}, theirs["digests"])
        assert not differ, (
            f"this machine ({_describe(mine['info'])}) computes {len(differ)} of {len(mine['digests'])} op digests "
            f"differently from {name} ({_describe(theirs['info'])}): {', '.join(differ)}. Under the pinned setting "
            f"every x86-64 machine with AVX2 should compute the same bits; see `python -m stcl.numerics_digests -h`")


def test_a_changed_kernel_changes_the_digests():
    """The digests see each library's kernels: lower ISAs in oneDNN, MKL's compatible path, ATen unvectorised."""
    reference = _machines()[MACHINES[0].name]["digests"]
    changed = _measure("--threads", "1", ONEDNN_MAX_CPU_ISA="SSE41", MKL_CBWR="COMPATIBLE",
                       ATEN_CPU_CAPABILITY="default")
    assert changed["info"]["env"]["ONEDNN_MAX_CPU_ISA"] == "SSE41"  # the caller's settings win over the pin
    differ = set(compare(changed["digests"], reference))
    assert {"conv3x3_64@1t", "linear_512_384@1t", "layer_norm@1t", "adamw_3_steps@1t"} <= differ
    assert "relu@1t" not in differ  # exact in any kernel


def _pretrain_params(folder: Path, iters: int) -> tuple[Path, str]:
    """params.yaml with pretrain_coco cut to ``iters`` iterations, and the digest of the sections it reads."""
    data = yaml.safe_load((REPO / "params.yaml").read_text())
    sections = json.dumps({k: data[k] for k in PRETRAIN_SECTIONS}, sort_keys=True)
    data["pretrain_coco"].update(iters=iters, checkpoint_every=iters, log_every=1)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, hashlib.sha256(sections.encode()).hexdigest()[:16]


def test_a_short_default_pretrain_coco_gives_the_committed_weights(tmp_path):
    expected = json.loads(PRETRAIN.read_text())
    params, params_digest = _pretrain_params(tmp_path, expected["iters"])
    commands = [["synth", "--out", "data"], ["prepare", "--out", "prep"],
                ["train", "--stage", "pretrain_coco", "--device", "cpu", "--coco-semantic", "prep/coco_semantic",
                 "--out", "model"]]
    # one fresh process (one start-up) runs the three `stcl` commands in turn, as the CLI would
    script = "import sys\nfrom stcl.cli import main\nfor c in sys.argv[1:]:\n    assert main(c.split()) == 0, c\n"
    done = subprocess.run([sys.executable, "-c", script, *(" ".join([*c, "--params", params.name]) for c in commands)],
                          cwd=tmp_path, env=_env(OMP_NUM_THREADS=str(expected["threads"])), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    measured = weights_digest(tensor_digests(tmp_path / "model" / "model.pt"))
    changed_params = "" if params_digest == expected["params_digest"] else (
        f" (params.yaml's {', '.join(PRETRAIN_SECTIONS)} changed since it was measured: {params_digest} instead of "
        f"{expected['params_digest']}; re-measure on a machine whose op digests match)")
    assert measured == expected["weights_digest"], (
        f"{expected['iters']} iterations of pretrain_coco at {expected['threads']} threads gave weights digest "
        f"{measured}, committed {expected['weights_digest']}{changed_params}")


@pytest.mark.slow
def test_the_case_rules_of_the_refused_values_are_the_libraries_own():
    """What `stcl.numerics.ACCEPTED` refuses is not taken as written: MKL reads a lower-case branch as AUTO
    (the machine's own), ATen ignores an upper-case capability; oneDNN reads any case (``sse41`` is taken)."""
    off = {numerics.ENV: "0", "MKL_CBWR": "AUTO"}
    auto = _measure("--threads", "1", **off)["digests"]
    assert compare(_measure("--threads", "1", **off | {"MKL_CBWR": "COMPATIBLE"})["digests"], auto)  # taken
    lower = _measure("--threads", "1", **off | {"MKL_CBWR": "compatible", "ATEN_CPU_CAPABILITY": "DEFAULT"})
    assert compare(lower["digests"], auto) == []  # neither taken as written
    taken = _measure("--threads", "1", **off, ONEDNN_MAX_CPU_ISA="sse41")["digests"]
    assert "conv3x3_64@1t" in compare(taken, auto)
    for name, value in (("MKL_CBWR", "compatible"), ("ATEN_CPU_CAPABILITY", "DEFAULT")):
        with pytest.raises(numerics.NumericsError):
            numerics.apply({name: value})
    numerics.apply({"ONEDNN_MAX_CPU_ISA": "sse41"})
