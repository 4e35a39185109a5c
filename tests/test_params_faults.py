"""params.yaml faults: strict numbers, one line per fault by its dotted key path, YAML errors by file and line,
`model.out_indices` against the backbone's ViT depth, `model.pretrained_from_hub` against `model.pretrained` and the
backbone's family, the data roots of `data.synthetic`, `optimizer.layer_decay` against the optimizer, a pseudo-label
job's shard count (all caught by `stcl params` / `snakemake -n` and every command, in the same words: params
validates them once and nothing checks them again)."""

from pathlib import Path

import pytest
import yaml

from stcl.params import Params, ParamsError, load_params

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path, data):
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def _numeric_leaves(data, path=()):
    """(path, value) of every int/float (not bool) in a params mapping, list items included."""
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        if isinstance(value, (dict, list)):
            yield from _numeric_leaves(value, (*path, key))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield (*path, key), value


def _set(data, path, value):
    import copy

    out = copy.deepcopy(data)
    node = out
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(node, dict) else node[key]
    node[path[-1]] = value
    return out


def test_numbers_are_strict_a_bool_or_a_quoted_number_is_refused_with_its_key():
    """YAML `true` used to become 1 and `"0.5"` 0.5; every numeric key of params.yaml now refuses both."""
    from stcl.params import parse_params
    from stcl.presets import recipe_dict

    base = recipe_dict(Params())
    leaves = list(_numeric_leaves(base))
    assert len(leaves) > 60  # every numeric key of params.yaml, tuples' items included
    for path, value in leaves:
        key = ".".join(map(str, path))
        for bad in (True, str(value)):
            with pytest.raises(ParamsError) as err:
                parse_params(_set(base, path, bad), "params.yaml")
            lines = str(err.value).splitlines()
            assert len(lines) == 2 and lines[1].startswith(f"  {key}: "), (key, bad, lines)
    # keys whose default is null, and the cases the probe found
    for path, bad in [
        (("cluster", "train", "nodes"), True),
        (("tc", "videos"), True),
        (("pseudo_label", "class_balanced_portion"), True),
        (("pseudo_label", "threshold"), "0.5"),
        (("train", "optimizer", "layer_decay"), "0.9"),
        (("model", "out_indices"), [0, 1, 2, True]),
    ]:
        with pytest.raises(ParamsError, match=rf"\n  {'.'.join(path)}(\.\d)?: [^\n]*$"):
            parse_params(_set(base, path, bad), "params.yaml")


def test_a_float_key_takes_a_yaml_int_and_lists_become_tuples(tmp_path):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["train"]["optimizer"]["lr"] = 1
    data["model"]["mean"] = [120, 116, 103]
    data["infer"]["scales"] = [1, 2]
    params = load_params(_write(tmp_path, data))
    assert params.train_stcl.optimizer.lr == 1.0 and isinstance(params.train_stcl.optimizer.lr, float)
    assert params.model.mean == (120.0, 116.0, 103.0) and params.infer.scales == (1.0, 2.0)


@pytest.mark.parametrize("bad", [0, -3, True, "some", 2.5])
def test_tc_videos_fault_is_one_line_without_pydantic_branch_names(tmp_path, bad):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["tc"]["videos"] = bad
    with pytest.raises(ParamsError) as err:
        load_params(_write(tmp_path, data))
    assert str(err.value).splitlines()[1:] == ['  tc.videos: must be a positive integer or "all"']


def test_a_typo_in_the_shared_train_section_is_one_line(tmp_path):
    """`train:` is copied into every stage: its faults used to be listed again for each of the 4 stages."""
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["train"]["itres"] = 3
    data["train"]["optimizer"]["lr"] = -1.0
    with pytest.raises(ParamsError) as err:
        load_params(_write(tmp_path, data))
    lines = str(err.value).splitlines()
    assert lines[0].endswith("invalid params (2 problem(s))")
    assert sorted(lines[1:]) == ["  train.itres: unknown key", "  train.optimizer.lr: Input should be greater than 0"]
    # a stage that writes the fault itself is still named
    data["train_ade"]["itres"] = 3
    data["train_stcl"]["optimizer"] = {"lr": -1.0}
    with pytest.raises(ParamsError) as err:
        load_params(_write(tmp_path, data))
    lines = str(err.value).splitlines()
    assert sorted(lines[1:]) == [
        "  train.itres: unknown key",
        "  train.optimizer.lr: Input should be greater than 0",
        "  train_ade.itres: unknown key",
        "  train_stcl.optimizer.lr: Input should be greater than 0",
    ]


@pytest.mark.parametrize(
    "text, where, problem",
    [
        ("synth:\n  seed: [1\n", ":3:1: ", "expected ',' or ']', but got '<stream end>' (while parsing a flow sequence at line 2)"),
        ("synth:\n  seed: 1\n   height: 2\n", ":3:10: ", "mapping values are not allowed here"),
    ],
)
def test_yaml_errors_name_the_file_and_line_in_one_line(tmp_path, text, where, problem):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert str(err.value) == f"{path}{where}not valid YAML: {problem}"
    assert "<unicode string>" not in str(err.value)


@pytest.mark.parametrize(
    "backbone, indices, needle",
    [
        ("dinov2_tiny", [0, 1, 2, 9], "model.out_indices: dinov2_tiny has 4 blocks: need four indices in [0, 4), got [0, 1, 2, 9]"),
        ("dinov3_vitl16", [5, 11, 17, 24], "model.out_indices: dinov3_vitl16 has 24 blocks: need four indices in [0, 24)"),
        ("resnet18", [0, 1, 2, 3], "model.out_indices: applies to the ViT backbones (dinov2_vitl14, "),
        ("swin_mini", [0, 1, 2, 3], "; set it to null"),
    ],
)
def test_out_indices_are_checked_by_params_not_when_training_starts(tmp_path, backbone, indices, needle):
    """Out of range or on a non-ViT backbone, out_indices passed `stcl params` and `snakemake -n`."""
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["model"].update(backbone=backbone, out_indices=indices)
    with pytest.raises(ParamsError) as err:
        load_params(_write(tmp_path, data))
    lines = str(err.value).splitlines()
    assert len(lines) == 2 and needle in lines[1], lines
    data["model"].update(backbone="dinov2_tiny", out_indices=[0, 0, 1, 3])
    assert load_params(_write(tmp_path, data)).model.out_indices == (0, 0, 1, 3)


def test_vit_depths_are_the_encoders_depths():
    """`VIT_DEPTHS` (kept in params so that validation never imports torch) equals the encoders' real depth,
    and names exactly the encoders that take out_indices."""
    from stcl.models.dino import DinoEncoder
    from stcl.models.encoders import build_encoder, encoder_names
    from stcl.params import VIT_DEPTHS

    vits = {name: build_encoder(name, device="meta") for name in VIT_DEPTHS}
    assert all(isinstance(enc, DinoEncoder) for enc in vits.values())
    assert {name: enc.num_layers for name, enc in vits.items()} == VIT_DEPTHS
    assert {n for n in encoder_names() if n.startswith("dino")} == set(VIT_DEPTHS)


@pytest.mark.parametrize(
    "backbone, pretrained, needle",
    [
        ("resnet18", "w.pth", "model.pretrained_from_hub: true while model.pretrained names a file: pick one source"),
        ("cswin_tiny", None, "model.pretrained_from_hub: cswin_tiny has no timm hub weights (hub: resnet50, "),
        ("dinov3_vitl16", None, "model.pretrained_from_hub: dinov3_vitl16 has no timm hub weights"),
        ("swin_mini", None, "; name a local file in model.pretrained and set this to false"),
    ],
)
def test_weights_sources_are_checked_by_params_not_when_the_encoder_is_built(tmp_path, backbone, pretrained, needle):
    """Both sources at once, or the hub on a family without hub weights, passed `stcl params` and `snakemake -n`
    and failed when training built the encoder, after synth and prepare."""
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["model"].update(backbone=backbone, pretrained=pretrained, pretrained_from_hub=True)
    with pytest.raises(ParamsError) as err:
        load_params(_write(tmp_path, data))
    lines = str(err.value).splitlines()
    assert len(lines) == 2 and needle in lines[1], lines
    for ok in ("resnet18", "swin_tiny_patch4_window7_224"):
        data["model"].update(backbone=ok, pretrained=None)
        assert load_params(_write(tmp_path, data)).model.pretrained_from_hub
    data["model"].update(backbone=backbone, pretrained="w.pth", pretrained_from_hub=False)
    assert load_params(_write(tmp_path, data)).model.pretrained == Path("w.pth")


def test_hub_backbones_are_the_encoders_that_reach_timms_hub(monkeypatch):
    """`HUB_BACKBONES` (params) is exactly the set of encoders whose hub opt-in reaches timm's pretrained loading,
    each with a timm name that has pretrained weights. The others ignore the opt-in, which params refuses for them
    (above): `build_encoder` receives validated params and does not check them again."""
    import timm

    from stcl.models.encoders import build_encoder, encoder_names
    from stcl.params import CNN_BACKBONES, HUB_BACKBONES

    class Reached(Exception):
        pass

    def spy(name, pretrained=False, **kwargs):
        if pretrained:
            raise Reached(name)
        return real(name, pretrained=False, **kwargs)

    real = timm.create_model
    monkeypatch.setattr(timm, "create_model", spy)
    reached = {}
    for name in encoder_names():
        # the CNN factory builds on the meta device without its hub weights: build the CNNs for real (stopped at timm)
        try:
            build_encoder(name, pretrained_from_hub=True, device=None if name in CNN_BACKBONES else "meta")
        except Reached as hit:
            reached[name] = str(hit)
        except ValueError as err:  # a Swin without released weights has no timm name to load
            assert "pretrained_from_hub needs hub_name" in str(err), (name, err)
    assert set(reached) == set(HUB_BACKBONES)
    assert all(timm.list_pretrained(f"{timm_name}.*") for timm_name in reached.values()), reached


def test_params_validation_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, stcl.params; stcl.params.Params(); assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_typo_missing_key_and_wrong_type_are_one_line_each_by_key_path(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(
        "train:\n  itres: 2\n  iters: '5'\ncluster:\n  train:\n    nodes: true\n"
        "train_stcl:\n  datasets: [{weight: 2}]\n"
    )
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert sorted(str(err.value).splitlines()[1:]) == [
        "  cluster.train.nodes: Input should be a valid integer, got true",
        '  train.iters: Input should be a valid integer, got "5"',
        "  train.itres: unknown key",
        "  train_stcl.datasets.0.name: missing key",
    ]


def test_an_exponent_without_a_dot_is_a_number_but_a_quoted_one_is_not(tmp_path):
    """PyYAML reads `1e-4` as a string (YAML 1.1); strict numbers would refuse a learning rate written so."""
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  optimizer:\n    lr: 1e-4\n    warmup_ratio: 1E-6\n    weight_decay: 5e+0\n")
    params = load_params(path)
    assert params.train_stcl.optimizer.lr == 1e-4 and params.train.optimizer.warmup_ratio == 1e-6
    assert params.train.optimizer.weight_decay == 5.0
    path.write_text("train:\n  optimizer:\n    lr: '1e-4'\n")
    with pytest.raises(ParamsError, match='train.optimizer.lr: Input should be a valid number, got "1e-4"'):
        load_params(path)


def _fault_line(tmp_path, data):
    """The fault lines `load_params` gives for ``data`` (the header line left out)."""
    with pytest.raises(ParamsError) as err:
        load_params(_write(tmp_path, data))
    return str(err.value).splitlines()[1:]


def test_synthetic_data_roots_are_where_synth_writes_them(tmp_path):
    """`data.synthetic: true` with roots `stcl synth --out <dir>` does not write was refused by data.smk only
    (`snakemake -n`), not by `stcl params` nor the commands."""
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["data"].update(synthetic=True, vspw_root="elsewhere/VSPW_480p")
    assert _fault_line(tmp_path, data) == [
        "  data: synthetic is true, so the data roots (vspw_root, coco_root, ade_root) must be <dir>/VSPW_480p, "
        "<dir>/coco and <dir>/ADEChallengeData2016 (what `stcl synth --out <dir>` writes); got elsewhere/VSPW_480p, "
        "data/coco, data/ADEChallengeData2016"
    ]
    data["data"].update(vspw_root="my data/VSPW", coco_root="my data/coco", ade_root="my data/ADEChallengeData2016")
    assert "got my data/VSPW, " in _fault_line(tmp_path, data)[0]
    data["data"].update(vspw_root="my data/VSPW_480p")
    assert load_params(_write(tmp_path, data)).data.vspw_root == Path("my data/VSPW_480p")
    data["data"].update(synthetic=False, vspw_root="/datasets/VSPW", coco_root="/coco", ade_root="/ade")
    assert load_params(_write(tmp_path, data)).data.coco_root == Path("/coco")


def test_layer_decay_needs_adamw(tmp_path):
    """`optimizer.layer_decay` with SGD passed `stcl params` and failed when training built its optimiser."""
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["train"]["optimizer"].update(name="sgd", layer_decay=0.9)
    assert _fault_line(tmp_path, data) == [
        "  train.optimizer.layer_decay: applies to AdamW only (name: adamw), not sgd; set it to null"
    ]
    data["train"]["optimizer"].update(name="adamw")
    assert load_params(_write(tmp_path, data)).train_stcl.optimizer.layer_decay == 0.9


def test_pseudo_label_command_refuses_a_shard_count_params_does_not_name(tmp_path, capsys):
    from stcl.cli import EXIT_USER_ERROR, main

    path = ROOT / "params.yaml"
    n = load_params(path).pseudo_label.shards
    common = ["--params", str(path), "--unlabeled", str(tmp_path / "u.txt"), "--dataset", str(tmp_path / "ds")]
    argv = ["pseudo_label", f"--shard=0/{n + 1}", *common, "--record", str(tmp_path / "r.json"), "--checkpoint", "m=m.pt"]
    assert main(argv) == EXIT_USER_ERROR
    assert capsys.readouterr().err == (
        f"stcl pseudo_label: error: --shard 0/{n + 1}: N must equal pseudo_label.shards = {n} in the params (the gather expects it)\n"
    )
    (tmp_path / "u.txt").write_text("vid/00000000\n")
    records = [str(tmp_path / f"{i}.json") for i in range(n + 1)]
    argv = ["pseudo_label", "--gather", *common, "--record", *records, "--stats", str(tmp_path / "s.json")]
    assert main(argv) == EXIT_USER_ERROR
    assert capsys.readouterr().err == (
        f"stcl pseudo_label: error: --record: {n + 1} records given, pseudo_label.shards = {n} in the params\n"
    )
    assert not (tmp_path / "ds").exists() and not (tmp_path / "s.json").exists()


@pytest.mark.parametrize(
    "section, value, line",
    [
        ("data", {"vspw_root": "elsewhere/VSPW_480p"}, "  data: synthetic is true, so the data roots"),
        ("train", {"optimizer": {"name": "sgd", "layer_decay": 0.9}}, "  train.optimizer.layer_decay: applies to AdamW only"),
        ("model", {"backbone": "cswin_tiny", "pretrained_from_hub": True}, "  model.pretrained_from_hub: cswin_tiny has no"),
        ("model", {"backbone": "resnet18", "out_indices": [0, 1, 2, 3]}, "  model.out_indices: applies to the ViT"),
    ],
)
def test_stcl_params_and_the_commands_refuse_the_same_file_with_the_same_line(tmp_path, capsys, section, value, line):
    """`stcl params --params f.yaml` and a stage command (here `stcl synth`, `stcl pseudo_label`) exit 1 with the
    same fault line, before anything is written."""
    from stcl.cli import EXIT_USER_ERROR, main

    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data[section].update(value)
    path = _write(tmp_path, data)
    runs = {
        "params": ["params", "--params", str(path)],
        "synth": ["synth", "--params", str(path), "--out", str(tmp_path / "data")],
        "pseudo_label": ["pseudo_label", "--params", str(path), "--shard", "0/2", "--unlabeled", str(tmp_path / "u.txt"),
                         "--dataset", str(tmp_path / "ds"), "--record", str(tmp_path / "r.json"), "--checkpoint", "m=m.pt"],
    }
    faults = {}
    for name, argv in runs.items():
        assert main(argv) == EXIT_USER_ERROR, name
        err = capsys.readouterr().err.splitlines()
        assert err[0] == f"stcl {name}: error: {path}: invalid params (1 problem(s))", (name, err)
        faults[name] = err[1:]
    assert len(faults["params"]) == 1 and faults["params"][0].startswith(line), faults
    assert faults["synth"] == faults["params"] == faults["pseudo_label"]
    assert not (tmp_path / "data").exists() and not (tmp_path / "ds").exists()
