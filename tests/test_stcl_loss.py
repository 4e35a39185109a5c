"""STCL equals a plain float64 implementation of paper eq. 1-2 (loss AND gradients), edge cases included."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stcl.losses import sample_anchors, spatial_temporal_consistency_loss

IGNORE = 255


def naive_eq1(query, query_labels, references, reference_labels, tau, ignore=IGNORE):
    """Paper eq. 1-2 written out directly: the full anchor × key matrix, plain exp and log, float64.

    query (B,D,h,w), query_labels (B,h,w), references (B,T,D,h,w), reference_labels (B,T,h,w).
    """
    b, d = query.shape[:2]
    per_anchor = []
    for i in range(b):
        qf = F.normalize(query[i].double(), dim=0).flatten(1).T  # (hw,D)
        rf = F.normalize(references[i].double(), dim=1).permute(0, 2, 3, 1).reshape(-1, d)
        ql, rl = query_labels[i].flatten(), reference_labels[i].flatten()
        qv, rv = ql != ignore, rl != ignore
        anchors, anchor_lab = qf[qv], ql[qv]
        keys, key_lab = torch.cat([qf[qv], rf[rv]]), torch.cat([ql[qv], rl[rv]])
        sim = torch.exp(anchors @ keys.T / tau)  # (N, N+M)
        for a in range(len(anchors)):
            pos = key_lab == anchor_lab[a]
            pos[a] = False  # the anchor itself is not a key
            neg = key_lab != anchor_lab[a]
            if not pos.any():
                continue  # no positive: not in Ω
            z = sim[a][neg].sum()
            per_anchor.append((-torch.log(sim[a][pos] / (sim[a][pos] + z))).mean())
    if not per_anchor:
        return query.sum() * 0.0 + references.sum() * 0.0
    return torch.stack(per_anchor).mean()


def _inputs(seed, b=2, t=2, d=6, h=4, w=5, classes=4, ignore_frac=0.2, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, d, h, w, generator=g, dtype=dtype)
    r = torch.randn(b, t, d, h, w, generator=g, dtype=dtype)
    ql = torch.randint(0, classes, (b, h, w), generator=g)
    rl = torch.randint(0, classes, (b, t, h, w), generator=g)
    ql[torch.rand(b, h, w, generator=g) < ignore_frac] = IGNORE
    rl[torch.rand(b, t, h, w, generator=g) < ignore_frac] = IGNORE
    return q, ql, r, rl


def _loss_and_grads(fn, q, ql, r, rl, **kw):
    q = q.clone().requires_grad_(True)
    r = r.clone().requires_grad_(True)
    loss = fn(q, ql, r, rl, **kw)
    gq, gr = torch.autograd.grad(loss, (q, r), allow_unused=True)
    gq = torch.zeros_like(q) if gq is None else gq
    gr = torch.zeros_like(r) if gr is None else gr
    return loss.detach(), gq, gr


def _assert_matches(q, ql, r, rl, tau=0.07, atol=1e-5, **kw):
    ours = _loss_and_grads(spatial_temporal_consistency_loss, q, ql, r, rl, tau=tau, **kw)
    ref = _loss_and_grads(naive_eq1, q.double(), ql, r.double(), rl, tau=tau)
    for got, want, what in zip(ours, ref, ("loss", "grad query", "grad references")):
        assert torch.allclose(got.double(), want, atol=atol, rtol=1e-5), f"{what}: {got} vs {want}"
    return ours


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("chunk_size", [1, 7, 4096])
def test_matches_eq1_random(seed, chunk_size):
    loss, gq, _ = _assert_matches(*_inputs(seed), chunk_size=chunk_size)
    assert loss > 0 and gq.abs().sum() > 0


def test_matches_eq1_in_float32():
    _assert_matches(*_inputs(10, d=16, h=6, w=6, dtype=torch.float32), atol=1e-4, chunk_size=5)


@pytest.mark.parametrize("tau", [0.01, 0.07, 1.0])
def test_matches_eq1_across_temperatures(tau):
    _assert_matches(*_inputs(3), tau=tau, chunk_size=3)


def test_small_tau_float32_stays_finite_and_exact():
    # s spans ±1/τ = ±200: exp(s) overflows float32, the shifted computation must not.
    q, ql, r, rl = _inputs(5, dtype=torch.float32)
    _assert_matches(q, ql, r, rl, tau=0.005, atol=1e-3)


def test_anchors_without_positive_are_excluded():
    q, ql, r, rl = _inputs(1, b=1, t=1, classes=3)
    ql[0, 0, 0] = 7  # a class seen once in the whole clip: no positive for that anchor
    rl[0, 0, 1, 1] = 8  # and one only in a reference frame: a key, never an anchor
    _assert_matches(q, ql, r, rl, chunk_size=4)


def test_class_only_in_reference_frame_is_a_negative():
    q, ql, r, rl = _inputs(2, b=1, t=1, classes=2)
    rl[0, 0, :2] = 3  # class 3 exists only in the reference frame
    loss_with, *_ = _assert_matches(q, ql, r, rl)
    rl2 = rl.clone()
    rl2[rl2 == 3] = IGNORE
    loss_without, *_ = _assert_matches(q, ql, r, rl2)
    assert not torch.isclose(loss_with, loss_without)


def test_single_class_gives_zero_loss_and_gradient():
    q, ql, r, rl = _inputs(4, classes=1, ignore_frac=0.0)
    loss, gq, gr = _assert_matches(q, ql, r, rl)
    assert loss == 0 and gq.abs().max() == 0 and gr.abs().max() == 0


def test_all_ignored_is_zero_with_a_graph():
    q, ql, r, rl = _inputs(6)
    ql.fill_(IGNORE)
    rl.fill_(IGNORE)
    q.requires_grad_(True)
    loss = spatial_temporal_consistency_loss(q, ql, r, rl)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert q.grad.abs().max() == 0


def test_query_only_when_no_references():
    q, ql, r, rl = _inputs(7)
    empty_r, empty_l = r[:, :0], rl[:, :0]
    ours = spatial_temporal_consistency_loss(q, ql, None, None)
    want = naive_eq1(q, ql, empty_r, empty_l, 0.07)
    assert torch.allclose(ours, want, atol=1e-10)
    _assert_matches(q, ql, empty_r, empty_l, chunk_size=3)


def test_labels_at_image_resolution_are_resized_nearest():
    q, ql, r, rl = _inputs(8, h=4, w=4)
    big_q = ql.repeat_interleave(4, dim=1).repeat_interleave(4, dim=2)  # (B,16,16): each label a 4×4 block
    big_r = rl.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)
    small = spatial_temporal_consistency_loss(q, ql, r, rl)
    assert torch.allclose(spatial_temporal_consistency_loss(q, big_q, r, big_r), small, atol=1e-12)


def test_features_are_l2_normalised_inside():
    q, ql, r, rl = _inputs(9)
    base = spatial_temporal_consistency_loss(q, ql, r, rl)
    assert torch.allclose(spatial_temporal_consistency_loss(3.0 * q, ql, 0.5 * r, rl), base, atol=1e-10)


def test_checkpointing_does_not_change_gradients():
    q, ql, r, rl = _inputs(11)
    a = _loss_and_grads(spatial_temporal_consistency_loss, q, ql, r, rl, chunk_size=4)
    b = _loss_and_grads(spatial_temporal_consistency_loss, q, ql, r, rl, chunk_size=4, use_checkpoint=False)
    for x, y in zip(a, b):
        assert torch.allclose(x, y, atol=1e-12)


def test_random_sampling_uses_a_subset_of_anchors():
    q, ql, r, rl = _inputs(12, b=1, h=6, w=6)
    full = spatial_temporal_consistency_loss(q, ql, r, rl)
    assert torch.allclose(spatial_temporal_consistency_loss(q, ql, r, rl, sampling="random", max_anchors=10**6), full)
    g = torch.Generator().manual_seed(0)
    sub = spatial_temporal_consistency_loss(q, ql, r, rl, sampling="random", max_anchors=5, generator=g)
    assert torch.isfinite(sub) and not torch.isclose(sub, full)


def test_sample_anchors_random_and_hard():
    labels = torch.tensor([0] * 10 + [1] * 10)
    g = torch.Generator().manual_seed(0)
    idx = sample_anchors(labels, 6, "random", generator=g)
    assert len(idx) == 6 and len(idx.unique()) == 6 and torch.equal(idx, idx.sort().values)
    preds = labels.clone()
    preds[[0, 1, 10]] = 5  # three wrongly predicted (hard) pixels
    idx = sample_anchors(labels, 8, "hard", predictions=preds, generator=g)
    assert len(idx) == 8 and {0, 1, 10} <= set(idx.tolist())
    assert (labels[idx] == 0).sum() == 4 and (labels[idx] == 1).sum() == 4
    with pytest.raises(ValueError, match="query_predictions"):
        sample_anchors(labels, 4, "hard")


def test_hard_sampling_runs_through_the_loss():
    q, ql, r, rl = _inputs(13, b=2, h=6, w=6)
    preds = torch.randint(0, 4, ql.shape)
    loss = spatial_temporal_consistency_loss(q, ql, r, rl, sampling="hard", max_anchors=8, query_predictions=preds)
    assert torch.isfinite(loss) and loss > 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tau": 0.0}, "tau"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"sampling": "random"}, "max_anchors"),
        ({"sampling": "bogus", "max_anchors": 3}, "sampling"),
    ],
)
def test_bad_options_raise_naming_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        spatial_temporal_consistency_loss(*_inputs(0), **kwargs)


def test_bad_shapes_raise_naming_the_argument():
    q, ql, r, rl = _inputs(0)
    with pytest.raises(ValueError, match="references"):
        spatial_temporal_consistency_loss(q, ql, r[:, :, :3], rl)
    with pytest.raises(ValueError, match="reference_labels"):
        spatial_temporal_consistency_loss(q, ql, r, rl[:, :1])
    with pytest.raises(ValueError, match="query_labels"):
        spatial_temporal_consistency_loss(q, ql[:1], r, rl)


def test_computed_in_float32_under_bf16_autocast():
    q, ql, r, rl = _inputs(14, dtype=torch.float32)
    plain = spatial_temporal_consistency_loss(q, ql, r, rl)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = spatial_temporal_consistency_loss(q, ql, r, rl)
        from_bf16 = spatial_temporal_consistency_loss(q.bfloat16(), ql, r.bfloat16(), rl)
    assert autocast.dtype == torch.float32 and torch.equal(autocast, plain)
    assert from_bf16.dtype == torch.float32 and torch.allclose(from_bf16, plain, rtol=2e-2)


def test_sampling_with_few_or_no_candidate_anchors():
    q, ql, r, rl = _inputs(15, b=2)
    ql[0] = IGNORE  # first clip: no anchors at all
    ql[1] = IGNORE
    ql[1, 0, 0] = 9  # second clip: one anchor, of a class seen nowhere else (no positive)
    preds = torch.zeros_like(ql)
    full = spatial_temporal_consistency_loss(q, ql, r, rl)
    for sampling in ("random", "hard"):
        for max_anchors in (1, 1000):
            loss = spatial_temporal_consistency_loss(
                q, ql, r, rl, sampling=sampling, max_anchors=max_anchors, query_predictions=preds
            )
            assert torch.allclose(loss, full) and loss == 0
