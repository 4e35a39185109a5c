"""Malformed weights files in every layout `stcl` reads: one line naming the file (and key), exit 1, nothing
written; never a traceback (issue 29, item 6).

The fuzz test mutates a small real file of each layout (tests/_weights_fixtures.py): truncations at several
cut points, a value that is an int, a string, None, a nested dict or a 0-d tensor, an int key, and the keys a
layout's mapping reads (``pos_embed``, ``cls_token``, ``q_proj.weight``, ``qkv.bias``, Swin's PatchMerging,
RAFT's twin norms…) missing or of the wrong type. Each file goes through the loaders the commands call
(`stcl weights`, `stcl train` and `model.pretrained`: `load_segmentor_weights`; `stcl predict`/`infer`:
`load_model`; `stcl flow`: `load_raft`), whose ValueError / OSError `stcl.cli.main` prints as its one line with
exit 1; `test_commands_*` runs the commands themselves on a few of them.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml
from _data_fixtures import write_vspw_root
from _weights_fixtures import CHANNELS, weights_files

from stcl.cli import EXIT_USER_ERROR, error_line, main
from stcl.params import ModelParams, Params

# keys a layout's mapping reads (beside the first and last key of every file)
STRUCTURAL = {
    "stcl-model": ["backbone.model.conv1.weight"],
    "mmseg": [
        "backbone.stages.0.downsample.reduction.weight",
        "backbone.stages.0.downsample.norm.weight",
        "backbone.stages.0.blocks.0.attn.w_msa.relative_position_bias_table",
    ],
    "swin-official": ["layers.0.downsample.reduction.weight", "layers.0.blocks.0.attn.relative_position_bias_table"],
    "swin-timm": ["layers.1.downsample.reduction.weight", "layers.0.blocks.0.attn.relative_position_bias_table"],
    "cswin-official": ["stage1_conv_embed.0.weight"],
    "resnet-timm": ["conv1.weight"],
    "dinov2-official": ["pos_embed", "cls_token", "patch_embed.proj.weight"],
    "dinov2-timm": ["pos_embed", "cls_token", "patch_embed.proj.weight"],
    "dinov3-official": ["storage_tokens", "rope_embed.periods", "blocks.0.attn.qkv.bias", "patch_embed.proj.weight"],
    "dinov3-timm": ["reg_token", "blocks.0.attn.q_bias"],
    "dinov3-hf": [
        "layer.0.attention.q_proj.weight",
        "layer.0.attention.v_proj.weight",
        "embeddings.cls_token",
        "embeddings.register_tokens",
        "embeddings.patch_embeddings.weight",
    ],
    "raft-official": ["module.cnet.layer2.0.norm3.weight", "module.fnet.conv1.weight"],
    "raft-torchvision": ["feature_encoder.convnormrelu.0.weight"],
}
VALUES = {"int": 3, "str": "weights", "None": None, "dict": {"w": torch.zeros(2)}, "0-d": torch.tensor(1.0)}
CUTS = (0.05, 0.5, -1)  # fractions of the file, or bytes from its end


def _cases() -> list[tuple[str, str]]:
    cases = []
    for i, (fmt, keys) in enumerate(STRUCTURAL.items()):
        cases += [(fmt, f"cut {at}") for at in CUTS] + [(fmt, "int key")]
        # every kind of wrong value in every layout (one check for all layouts, whatever the key's place): at
        # its first or its last key by turns, so each (place, kind) pair still comes in five to seven layouts;
        # a missing first key in all of them
        cases += [(fmt, f"{('<first>', '<last>')[(i + k) % 2]} {kind}") for k, kind in enumerate(VALUES)]
        cases.append((fmt, "<first> missing"))
        for key in keys:  # what the layout's mapping reads: missing, of another type, of another shape
            cases += [(fmt, f"{key} {kind}") for kind in ("str", "0-d", "missing")]
    cases += [
        ("stcl-model", f"{key} {kind}")
        for key in ("num_classes", "proj_dim", "model_params", "state_dict")
        for kind in ("str", "dict", "missing")
    ]
    cases += [("stcl-model", "model_params.backbone int"), ("mmseg", "state_dict int")]
    # keys a layout's mapping drops (checked when present): without them the file is whole; a file's last key
    # is also missing in a file cut a little shorter by hand, which the truncations cover; resnet's last key is
    # its ImageNet classifier, dropped whatever its shape
    dropped = ("rope_embed.periods missing", "<last> missing", "module.cnet.layer2.0.norm3.weight missing")
    return [c for c in cases if not c[1].startswith(dropped) and c != ("resnet-timm", "<last> 0-d")]


@pytest.fixture(scope="module")
def files(module_tmp):
    made = weights_files(module_tmp("weights"))
    for fmt, keys in STRUCTURAL.items():
        state = _state(made[fmt][1])
        assert all(k in state for k in keys), [k for k in keys if k not in state]
    return made


def _state(content: dict) -> dict:
    for key in ("state_dict", "state_dict_ema", "model"):
        if isinstance(content.get(key), dict):
            return content[key]
    return content


def _mutated(content: dict, mutation: str) -> dict:
    content = copy.copy(content)
    state = _state(content)
    if state is not content:
        wrapper = next(k for k in ("state_dict", "state_dict_ema", "model") if content.get(k) is state)
        state = content[wrapper] = dict(state)
    else:
        content = state = dict(state)
    if mutation == "int key":
        state[7] = next(iter(state.values()))
        return content
    key, kind = mutation.rsplit(" ", 1)
    if key == "model_params.backbone":
        content["model_params"] = {**content["model_params"], "backbone": 18}
        return content
    target = content if key in ("num_classes", "proj_dim", "model_params", "state_dict", "meta") else state
    key = {"<first>": next(iter(state)), "<last>": list(state)[-1]}.get(key, key)
    if kind == "missing":
        del target[key]
    else:
        target[key] = VALUES[kind]
    return content


def _load_as_the_commands_do(path: Path, backbone: str, fmt: str) -> None:
    from stcl.flow.raft import load_raft
    from stcl.models import build_segmentor, load_model
    from stcl.models.loading import load_segmentor_weights

    if backbone == "raft":
        load_raft(path)
        return
    if fmt == "stcl-model":
        load_model(path)  # stcl predict / infer
    model = build_segmentor(ModelParams(backbone=backbone, **CHANNELS), 124, device="meta", load_pretrained=False)
    load_segmentor_weights(model, path, dry_run=True)  # stcl weights, stcl train (init, model.pretrained)


@pytest.mark.parametrize(("fmt", "mutation"), _cases())
def test_malformed_weights_are_one_line_naming_the_file(files, tmp_path, fmt, mutation):
    original, content, backbone = files[fmt]
    path = tmp_path / f"mutated{original.suffix if original.suffix != '.safetensors' else '.pth'}"
    if mutation.startswith("cut"):
        at = float(mutation.split()[1])
        data = original.read_bytes()
        path = tmp_path / f"mutated{original.suffix}"
        path.write_bytes(data[: int(len(data) * at)] if at > 0 else data[: len(data) + int(at)])
    else:
        torch.save(_mutated(content, mutation), path)
    before = sorted(tmp_path.iterdir())
    with pytest.raises((ValueError, OSError)) as info:
        _load_as_the_commands_do(path, backbone, fmt)
    line = error_line(info.value, [])
    assert "\n" not in line and line.startswith(f"{path}: "), line
    assert sorted(tmp_path.iterdir()) == before


def _params(folder: Path, **model) -> Path:
    data = Params().model_dump(mode="json")
    data["model"].update(CHANNELS, **model)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _one_line(capsys, command: str, path: Path) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"stcl {command}: error: {path}: "), lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("fmt", "mutation", "says"),
    [
        ("dinov2-official", "pos_embed missing", "pos_embed missing"),
        ("dinov2-official", "cls_token missing", "cls_token missing"),
        ("dinov3-hf", "layer.0.attention.q_proj.weight missing", "layer.0.attention.q_proj.weight missing"),
        ("resnet-timm", "conv1.weight int", "conv1.weight is int, not a tensor"),
        ("swin-official", "<first> str", "patch_embed.proj.weight under 'model' is str, not a tensor"),
        ("mmseg", "int key", "key 7 under 'state_dict' is int, not a name (str)"),
    ],
)
def test_commands_train_and_weights_refuse_in_one_line(files, tmp_path, capsys, fmt, mutation, says):
    """`stcl train` with the file as model.pretrained, and `stcl weights`: one line, exit 1, no --out made."""
    original, content, backbone = files[fmt]
    path = tmp_path / "pretrained.pth"
    torch.save(_mutated(content, mutation), path)
    params = _params(tmp_path, backbone=backbone, pretrained=str(path))
    out = tmp_path / "train_out"
    argv = ["train", "--stage", "pretrain_coco", "--params", str(params), "--out", str(out), "--device", "cpu"]
    capsys.readouterr()
    assert main(argv) == EXIT_USER_ERROR
    assert says in _one_line(capsys, "train", path)
    assert not out.exists()
    if fmt in ("dinov3-hf", "mmseg"):  # stcl weights is slow (it tries every backbone): two layouts
        assert main(["weights", str(path), "--params", str(params)]) == EXIT_USER_ERROR
        printed = capsys.readouterr()
        if printed.err:  # unreadable: the one error line
            assert printed.err.count("\n") == 1 and printed.err.startswith(f"stcl weights: error: {path}: {says}")
        else:  # readable: its report, whose result line says why it does not load
            assert f"result:   does NOT load: {path}: {says}" in printed.out and "Traceback" not in printed.out


@pytest.mark.parametrize("mutation", ["<first> int", "int key", "module.fnet.conv1.weight dict", "cut"])
def test_command_flow_refuses_a_malformed_raft_file_in_one_line(files, tmp_path, capsys, mutation):
    from _flow_fixtures import make_tc_root

    (tmp_path / "root").mkdir()
    vspw, _, _ = make_tc_root(tmp_path / "root")
    original, content, _ = files["raft-official"]
    path = tmp_path / "raft.pth"
    if mutation == "cut":
        path.write_bytes(original.read_bytes()[:-1])
    else:
        torch.save(_mutated(content, mutation), path)
    out = tmp_path / "flows"
    capsys.readouterr()
    assert main(["flow", "--vspw-root", str(vspw), "--weights", str(path), "--out", str(out)]) == EXIT_USER_ERROR
    _one_line(capsys, "flow", path)
    assert not out.exists() and not list(tmp_path.glob(".flows*"))


def test_a_directory_given_as_a_weights_or_model_file_is_named_as_such(tmp_path, capsys):
    folder = tmp_path / "weights_dir"
    folder.mkdir()
    frames = tmp_path / "frames"
    frames.mkdir()
    from PIL import Image

    Image.new("RGB", (32, 24)).save(frames / "00000.png")
    write_vspw_root(tmp_path, {"v": (1, 24, 32)}, split="val")  # a VSPW root of one video for stcl flow
    capsys.readouterr()
    assert main(["predict", str(frames), "--model", str(folder), "--out", str(tmp_path / "o"), "--device", "cpu"]) == 1
    assert "weights_dir: model file is a directory; name the file itself" in _one_line(capsys, "predict", folder)
    assert main(["flow", "--vspw-root", str(tmp_path), "--weights", str(folder), "--out", str(tmp_path / "f")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"stcl flow: error: {folder}: RAFT weights file is a directory; name the file itself", err
