"""One pass over a split, many outputs: same predictions as separate runs, each model once per frame."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from _data_fixtures import write_vspw_root
from _infer_fixtures import PointwiseNet
from _weights_fixtures import model_file

from stcl.commands.infer import parse_output_arg
from stcl.commands.sharded import parse_checkpoint_arg
from stcl.infer.ensemble import inference_amp
from stcl.infer.multiscale import TTA
from stcl.infer.outputs import OutputSpec, gather_outputs, predict_outputs
from stcl.infer.shards import shard_videos, write_record
from stcl.infer.sliding import Window

VIDEOS = {"v1": (2, 20, 28), "v2": (3, 18, 18), "v3": (1, 16, 24)}
TTA_SMALL = TTA(scales=(0.5, 1.0), flip=True, window=Window((16, 16), (12, 12)), batch_size=8)


class Counting:
    """A predictor that counts the windows it sees."""

    def __init__(self, seed: int) -> None:
        self.model = PointwiseNet(num_classes=124, seed=seed).eval()
        self.images = 0

    def __call__(self, x):
        self.images += x.shape[0]
        return self.model(x)


def _outputs(out: Path) -> list[OutputSpec]:
    return [
        OutputSpec("stcl", ("stcl",), out / "stcl"),
        OutputSpec("ade", ("ade",), out / "ade"),
        OutputSpec("teacher", ("ade", "stcl"), out / "teacher", save_probs=True),
        OutputSpec("ensemble", ("student", "stcl", "ade"), out / "ensemble", weights=(2, 1, 1)),
    ]


def _pngs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.glob("*/*.png"))}


def test_one_pass_equals_separate_runs_and_runs_each_model_once(tmp_path: Path):
    root = write_vspw_root(tmp_path / "VSPW", VIDEOS, split="val")
    videos = list(VIDEOS)
    models = {"stcl": Counting(1), "ade": Counting(2), "student": Counting(3)}
    summary = predict_outputs(models, _outputs(tmp_path / "one"), TTA_SMALL, root, videos, progress=False)
    frames = sum(n for n, _, _ in VIDEOS.values())
    assert summary.frames == frames and summary.model_frames == 3 * frames
    assert summary.forward_passes == 3 * frames * len(TTA_SMALL.views)

    # separate runs, as the chain did before: 1 + 1 + 2 + 3 = 7 model passes per frame
    sep = {"stcl": Counting(1), "ade": Counting(2), "student": Counting(3)}
    for o in _outputs(tmp_path / "sep"):
        predict_outputs({m: sep[m] for m in o.members}, [o], TTA_SMALL, root, videos, progress=False)
    for name in ("stcl", "ade", "teacher", "ensemble"):
        assert _pngs(tmp_path / "one" / name) == _pngs(tmp_path / "sep" / name), name
    teacher_npy = sorted((tmp_path / "one" / "teacher").glob("*/*.npy"))
    assert len(teacher_npy) == frames
    for p in teacher_npy:
        np.testing.assert_array_equal(
            np.load(p), np.load(tmp_path / "sep" / "teacher" / p.relative_to(tmp_path / "one" / "teacher"))
        )
    # every model saw each window once in the one-pass run, 1, 3 and 3 times over in the separate runs
    assert models["stcl"].images == models["ade"].images == models["student"].images > 0
    assert sep["stcl"].images == 3 * models["stcl"].images and sep["ade"].images == 3 * models["ade"].images
    assert sep["student"].images == models["student"].images


def test_rerun_runs_only_the_models_missing_outputs_need(tmp_path: Path):
    root = write_vspw_root(tmp_path / "VSPW", VIDEOS, split="val")
    outputs = _outputs(tmp_path / "out")
    predict_outputs(
        {n: Counting(i) for i, n in enumerate(("stcl", "ade", "student"))},
        outputs,
        TTA_SMALL,
        root,
        list(VIDEOS),
        progress=False,
    )
    before = {o.name: _pngs(o.out) for o in outputs}
    (outputs[2].out / "v2" / "00000001.npy").unlink()  # teacher incomplete for v2 only
    (outputs[3].out / ".v1.dead0000.tmp").mkdir()  # temporary of a killed run
    models = {n: Counting(i) for i, n in enumerate(("stcl", "ade", "student"))}
    summary = predict_outputs(models, outputs, TTA_SMALL, root, list(VIDEOS), progress=False)
    assert summary.computed == ["v2"] and summary.skipped == ["v1", "v3"]
    assert summary.model_frames == 2 * 3  # teacher = ade + stcl, over v2's 3 frames
    assert models["student"].images == 0 and models["ade"].images > 0 and models["stcl"].images > 0
    assert {o.name: _pngs(o.out) for o in outputs} == before
    assert not any(p.name.endswith(".tmp") for p in outputs[3].out.iterdir())


def test_failure_mid_video_leaves_no_folder_in_any_output(tmp_path: Path):
    root = write_vspw_root(tmp_path / "VSPW", VIDEOS, split="val")
    calls = []

    def failing(x):
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("killed")
        return PointwiseNet(124)(x)

    outputs = [OutputSpec("a", ("m",), tmp_path / "a"), OutputSpec("b", ("m",), tmp_path / "b")]
    with pytest.raises(RuntimeError, match="killed"):
        predict_outputs({"m": failing}, outputs, TTA_SMALL, root, ["v2"], progress=False)
    assert list((tmp_path / "a").iterdir()) == [] and list((tmp_path / "b").iterdir()) == []


def test_shards_then_gather(tmp_path: Path):
    root = write_vspw_root(tmp_path / "VSPW", VIDEOS, split="val")
    outputs = _outputs(tmp_path / "out")
    models = {n: Counting(i) for i, n in enumerate(("stcl", "ade", "student"))}
    records = []
    for i in range(2):
        mine = shard_videos(list(VIDEOS), i, 2)
        s = predict_outputs(models, outputs, TTA_SMALL, root, mine, progress=False)
        records.append(tmp_path / f"{i}-of-2.json")
        extra = {"model_frames": s.model_frames, "forward_passes": s.forward_passes}
        write_record(records[-1], "infer", i, 2, mine, s.computed, s.skipped, s.frames, **extra)
    manifest = tmp_path / "val.json"
    with pytest.raises(ValueError, match=r"expected shard records 0\.\.0 of 1"):
        gather_outputs(records[:1], outputs, root, list(VIDEOS), manifest)
    shutil_target = outputs[1].out / "v3" / "00000000.png"
    saved = shutil_target.read_bytes()
    shutil_target.unlink()
    with pytest.raises(ValueError, match=r"ade.*v3.*incomplete"):
        gather_outputs(records, outputs, root, list(VIDEOS), manifest)
    assert not manifest.exists()
    shutil_target.write_bytes(saved)
    result = gather_outputs(records, outputs, root, list(VIDEOS), manifest)
    assert json.loads(manifest.read_text()) == result
    assert result["frames"] == 6 and result["model_frames"] == 18
    with pytest.raises(FileNotFoundError, match="shard records missing.*9-of-2.json"):
        gather_outputs([tmp_path / "9-of-2.json"], outputs, root, list(VIDEOS), manifest)


def test_argument_parsing_names_the_argument():
    assert parse_checkpoint_arg("stcl=a/b.pt") == ("stcl", Path("a/b.pt"))
    spec = parse_output_arg("ens=a,b,c:2,1,1=out/dir")
    assert spec.members == ("a", "b", "c") and spec.out == Path("out/dir")
    assert spec.weights == pytest.approx((0.5, 0.25, 0.25))
    assert parse_output_arg("t=a,b=x").weights == (0.5, 0.5)
    for bad in ("ens=a,b", "ens=a,b:1=x", "ens=a,a=x", "e ns=a=x", "ens=a:x=y", "ens=a:-1=x"):
        with pytest.raises(ValueError, match="--output"):
            parse_output_arg(bad)
    with pytest.raises(ValueError, match="--checkpoint"):
        parse_checkpoint_arg("nopath")


def test_unknown_member_and_shared_folder_are_errors(tmp_path: Path):
    root = write_vspw_root(tmp_path / "VSPW", VIDEOS, split="val")
    with pytest.raises(ValueError, match="no checkpoint named zz"):
        predict_outputs({"a": Counting(0)}, [OutputSpec("o", ("zz",), tmp_path / "o")], TTA_SMALL, root, ["v1"])
    same = [OutputSpec("o", ("a",), tmp_path / "o"), OutputSpec("p", ("a",), tmp_path / "o")]
    with pytest.raises(ValueError, match="same folder"):
        predict_outputs({"a": Counting(0)}, same, TTA_SMALL, root, ["v1"])


def test_amp_applies_on_cuda_only():
    assert inference_amp("bf16", torch.device("cpu")) == "off"
    assert inference_amp("bf16", torch.device("cuda")) == "bf16"
    with pytest.raises(ValueError, match="amp"):
        inference_amp("fp8", torch.device("cpu"))


def test_cli_sharded_one_pass_and_gather(tmp_path: Path):
    from stcl.cli import main
    from stcl.params import Params

    root = write_vspw_root(tmp_path / "VSPW", {"a": (2, 24, 32), "b": (1, 24, 24)}, split="val")
    data = Params().model_dump(mode="json")
    data["data"].update(synthetic=False, vspw_root=str(root))
    data["infer"].update(scales=[1.0], crop_size=[32, 32], stride=[24, 24], batch_size=4, amp="bf16", shards=2)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(data))
    a, b = model_file(tmp_path / "a.pt", seed=0), model_file(tmp_path / "b.pt", seed=1)
    outs = [f"a=a={tmp_path / 'pa'}", f"ens=a,b:2,1={tmp_path / 'pe'}"]
    common = ["infer", "--params", str(params), "--root", str(root), "--split", "val", "--device", "cpu"]
    common += [x for o in outs for x in ("--output", o)]
    ckpts = ["--checkpoint", f"a={a}", "--checkpoint", f"b={b}"]
    recs = [tmp_path / "r" / f"{i}-of-2.json" for i in range(2)]
    for i in range(2):
        assert main([*common, *ckpts, "--shard", f"{i}/2", "--record", str(recs[i])]) == 0
    assert main([*common, "--gather", "--record", *map(str, recs), "--manifest", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["frames"] == 3
    # one unsharded job without a record (as the ablation rules run it) gives the same PNGs
    one = ["infer", "--params", str(params), "--root", str(root), "--split", "val", "--device", "cpu", *ckpts]
    assert main([*one, "--output", f"ens=a,b:2,1={tmp_path / 'one'}"]) == 0
    assert _pngs(tmp_path / "one") == _pngs(tmp_path / "pe")
    assert main([*common, "--checkpoint", f"a={a}"]) == 1  # output ens needs b: one clear error
    assert main([*common, *ckpts, "--shard", "2/2"]) == 1
    assert main([*common, *ckpts, "--shard", "0/3"]) == 1  # N != infer.shards
    assert main([*common, "--gather", "--record", str(recs[0]), "--manifest", str(tmp_path / "m.json")]) == 1
