from pathlib import Path

import pytest
import yaml

from stcl.params import Params, ParamsError, load_params

ROOT = Path(__file__).resolve().parents[1]


def test_params_yaml_is_the_default():
    assert load_params(ROOT / "params.yaml") == Params()


def _write(tmp_path, data):
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda d: d["train_stcl"]["optimizer"].__setitem__("lr", -1.0), "train_stcl.optimizer.lr"),
        (lambda d: d["augment"].__setitem__("crop_size", [-64, 64]), "augment.crop_size.0"),
        (lambda d: d["pseudo_label"].__setitem__("threshold", 1.5), "pseudo_label.threshold"),
        (lambda d: d["model"].__setitem__("chanels", 3), "model.chanels: unknown key"),
        (lambda d: d["train_ade"].__setitem__("iters", "many"), "train_ade.iters"),
        (lambda d: d["clips"].__setitem__("reference_offsets", [0, -3]), "clips"),
        (lambda d: d["train_stcl"].__setitem__("batch_size", 6), "train_stcl"),
    ],
)
def test_bad_values_name_the_key_path(tmp_path, edit, needle):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(data)
    with pytest.raises(ParamsError) as err:
        load_params(_write(tmp_path, data))
    assert needle in str(err.value)
    assert str(tmp_path / "params.yaml") in str(err.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ParamsError, match="nope.yaml"):
        load_params(tmp_path / "nope.yaml")
