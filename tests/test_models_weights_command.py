"""`stcl weights FILE`: format, fitting backbones and a strict dry-run load into params.yaml's model."""

from __future__ import annotations

import torch
import yaml

from stcl.cli import main
from stcl.models import build_encoder
from stcl.params import Params


def _params(tmp_path, **model):
    data = Params().model_dump(mode="json")
    data["model"].update(model)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _official_swin_mini(tmp_path):
    """swin_mini weights in the official release layout (PatchMerging at the end of each stage, head)."""
    src = build_encoder("swin_mini")
    official = {}
    for key, value in src.model.state_dict().items():
        if ".downsample." in key:
            n = int(key.split(".")[1])
            key = key.replace(f"layers.{n}.downsample", f"layers.{n - 1}.downsample")
        official[key] = value
    official["head.weight"] = torch.zeros(10, 256)
    official["head.bias"] = torch.zeros(10)
    path = tmp_path / "swin_mini_official.pth"
    torch.save({"model": official}, path)
    return path


def test_weights_command_names_format_fits_and_loads(tmp_path, capsys):
    path = _official_swin_mini(tmp_path)
    params = _params(tmp_path, backbone="swin_mini", channels=8, aux_channels=8)
    assert main(["weights", str(path), "--params", str(params)]) == 0
    out = capsys.readouterr().out
    assert "format:   swin-official" in out and "window 7" in out
    assert "fits:     swin_mini" in out and "swin_tiny" not in out.split("fits:")[1].splitlines()[0]
    assert "loads strictly" in out and "left at init" in out


def test_weights_command_says_when_it_does_not_load(tmp_path, capsys):
    path = _official_swin_mini(tmp_path)
    params = _params(tmp_path, backbone="resnet18", channels=8, aux_channels=8)
    assert main(["weights", str(path), "--params", str(params)]) == 1
    out = capsys.readouterr().out
    assert "does NOT load" in out and "holds a swin backbone" in out


def test_weights_command_unreadable_file_is_one_line_exit_1(tmp_path, capsys):
    bad = tmp_path / "half.pth"
    bad.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    assert main(["weights", str(bad), "--params", str(_params(tmp_path))]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "half.pth" in err and "truncated" in err
