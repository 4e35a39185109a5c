"""The product hooks of the claims benchmark's negative controls: STCL positives from shuffled labels
(``stcl.positives: shuffled``, ablation ``train_stcl_shuffled``) and the untrained model of a stage
(`stcl train --untrained`)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from _data_fixtures import write_ade, write_vspw
from stcl.ablations import ablation, ablation_params
from stcl.data.clips import DataPaths
from stcl.losses import segmentor_loss, spatial_temporal_consistency_loss
from stcl.losses.stcl import _shuffled_labels
from stcl.params import Params, StclParams, merge_overrides, parse_params
from stcl.train.stage import build_job

IGNORE = 255


def _clip(seed: int, b: int = 2, t: int = 2, d: int = 8, h: int = 6, w: int = 6, classes: int = 3):
    """Features that follow their labels (class c near direction c), so same-class pairing lowers the loss."""
    g = torch.Generator().manual_seed(seed)
    ql = torch.randint(0, classes, (b, h, w), generator=g)
    rl = torch.randint(0, classes, (b, t, h, w), generator=g)
    ql[torch.rand(b, h, w, generator=g) < 0.2] = IGNORE
    centre = torch.eye(classes, d, dtype=torch.float64) * 3

    def feats(labels: torch.Tensor) -> torch.Tensor:
        f = centre[labels.clamp(max=classes - 1)] + torch.randn(*labels.shape, d, generator=g, dtype=torch.float64)
        return f.movedim(-1, -3)  # (..., D, h, w)

    return feats(ql), ql, feats(rl), rl


def test_shuffled_positives_differ_from_the_labels_and_repeat_for_a_seed():
    q, ql, r, rl = _clip(0)
    labels = spatial_temporal_consistency_loss(q, ql, r, rl)
    assert torch.equal(spatial_temporal_consistency_loss(q, ql, r, rl, positives="labels"), labels)

    def shuffled(seed: int) -> torch.Tensor:
        return spatial_temporal_consistency_loss(
            q, ql, r, rl, positives="shuffled", generator=torch.Generator().manual_seed(seed)
        )

    a = shuffled(1)
    assert torch.isfinite(a) and not torch.isclose(a, labels)
    assert a > labels  # features follow the true classes: random positives are farther than same-class ones
    assert torch.equal(shuffled(1), a)  # deterministic for a seed
    assert not torch.equal(shuffled(2), a)
    torch.manual_seed(5)  # no generator: torch's global RNG, as in training (seeded, checkpointed)
    g1 = spatial_temporal_consistency_loss(q, ql, r, rl, positives="shuffled")
    torch.manual_seed(5)
    assert torch.equal(spatial_temporal_consistency_loss(q, ql, r, rl, positives="shuffled"), g1)


def test_shuffling_keeps_ignored_pixels_and_class_counts_per_clip():
    _, ql, _, rl = _clip(3, b=3)
    n = ql[0].numel()
    sq, sr = _shuffled_labels(ql.flatten(1), rl.flatten(1), IGNORE, torch.Generator().manual_seed(0))
    for i in range(3):
        before = torch.cat([ql[i].flatten(), rl[i].flatten()])
        after = torch.cat([sq[i], sr[i]])
        assert torch.equal(before == IGNORE, after == IGNORE)
        assert torch.equal(before.sort().values, after.sort().values)
        assert not torch.equal(before, after)
        assert torch.equal(after[:n], sq[i])


def test_positives_option_is_checked():
    with pytest.raises(ValueError, match="positives"):
        spatial_temporal_consistency_loss(*_clip(0), positives="bogus")
    with pytest.raises(ValueError, match="positives"):
        StclParams(positives="bogus")
    assert StclParams().positives == "labels"


def test_segmentor_loss_shuffles_stcls_positives_only():
    """The CE parts still read the true labels; only the STCL term changes."""
    q, ql, r, rl = _clip(4, b=2, t=1)
    logits = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    out = SimpleNamespace(logits=logits, aux_logits=logits * 0.5, proj=torch.cat([q[:, None], r], 1))
    labels = torch.cat([ql[:, None], rl], 1)
    _, real = segmentor_loss(out, labels, 0.4, StclParams())
    torch.manual_seed(0)
    _, control = segmentor_loss(out, labels, 0.4, StclParams(positives="shuffled"))
    assert control["ce"] == real["ce"] and control["aux"] == real["aux"]
    assert control["stcl"] != real["stcl"]


def test_the_shuffled_ablation_is_train_stcl_with_shuffled_positives():
    params = Params()
    run = ablation_params(params, "train_stcl_shuffled").train_stcl
    assert ablation("train_stcl_shuffled").stage == "train_stcl"
    assert run.stcl.enabled and run.stcl.positives == "shuffled" and run.seed_stream == "train_stcl_shuffled"
    assert run.init == params.train_stcl.init and run.iters == params.train_stcl.iters
    assert run.stcl.model_copy(update={"positives": "labels"}) == params.train_stcl.stcl


@pytest.fixture(scope="module")
def paths(module_tmp) -> DataPaths:
    root = module_tmp("controls_data")
    return DataPaths(vspw=write_vspw(root / "vspw", n_frames=8), ade=write_ade(root / "ade"))


def test_untrained_writes_the_weights_iteration_0_starts_from(tmp_path, paths):
    """`stcl train --untrained`: the stage's fresh initialisation (its seed) as model.pt, nothing trained."""
    from stcl.cli import main
    from stcl.models.checkpoints import read_model_file

    params = parse_params(merge_overrides(Params().model_dump(mode="json"), {"train": {"iters": 7}}))
    file = tmp_path / "params.yaml"
    import yaml

    file.write_text(yaml.safe_dump(params.model_dump(mode="json")))
    out = tmp_path / "untrained"
    args = ["train", "--params", str(file), "--stage", "train_ade", "--vspw", str(paths.vspw), "--ade",
            str(paths.ade), "--out", str(out), "--untrained"]
    assert main(args) == 0
    saved = read_model_file(out / "model.pt")
    assert saved["extra"]["iters"] == 0 and saved["extra"]["stage"] == "train_ade"
    fresh = build_job(params, "train_ade", tmp_path / "other", paths).model.state_dict()
    assert fresh.keys() == saved["state_dict"].keys()
    assert all(torch.equal(fresh[k], saved["state_dict"][k]) for k in fresh)
    assert not (out / "state").exists() or not any((out / "state").iterdir())
