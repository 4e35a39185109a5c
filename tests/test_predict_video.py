"""`stcl predict` as a user runs it: an mp4 in, label PNGs and an overlay mp4 out, checked by decoding them."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _video_fixtures import decode_video, encode_mp4, synth_vspw
from _weights_fixtures import model_file
from stcl.cli import main
from stcl.data.classes import VSPW_CLASSES
from stcl.data.vspw import frame_path, list_frames, read_split
from stcl.report.overlay import PALETTE, legend_box, legend_entries, render_overlay

FAST = ["--scales", "1.0", "--no-flip", "--crop-size", "32", "32", "--stride", "32", "32", "--device", "cpu"]


@pytest.fixture(scope="module")
def assets(module_tmp) -> dict[str, Path]:
    tmp = module_tmp("video")
    root = synth_vspw(tmp / "VSPW_480p", frames=20, val=1)
    video = read_split(root, "val")[0]
    frames = [np.asarray(Image.open(frame_path(root, video, s)).convert("RGB")) for s in list_frames(root, video)]
    return {
        "root": root,
        "frames_dir": root / "data" / video / "origin",
        "mp4": encode_mp4(frames[:12], tmp / "clip.mp4", Fraction(12)),
        "model": model_file(tmp / "model.pt", seed=0),
        "model_b": model_file(tmp / "model_b.pt", seed=1),
        "coco": model_file(tmp / "coco.pt", label_space="coco"),
    }


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _recovered_labels(overlay: np.ndarray, frame: np.ndarray, classes: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Undo the blend (colour = (overlay − (1 − α)·frame) / α) and take the nearest palette colour among ``classes``."""
    colour = (overlay.astype(np.float32) - (1 - alpha) * frame.astype(np.float32)) / alpha
    dist = ((colour[:, :, None, :] - PALETTE[classes][None, None].astype(np.float32)) ** 2).sum(-1)
    return classes[dist.argmin(-1)]


def test_predict_mp4_gives_an_overlay_mp4_whose_frames_match_the_label_pngs(assets, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["predict", str(assets["mp4"]), "--model", str(assets["model"]), "--model", str(assets["model_b"]),
                 "--out", str(out), *FAST])
    assert code == 0, capsys.readouterr().err
    inputs, in_fps, _ = decode_video(assets["mp4"])
    overlay, fps, announced = decode_video(out / "overlay.mp4")
    assert len(overlay) == len(inputs) == 12 and announced == 12
    assert fps == Fraction(12)
    assert all(o.shape == (48, 64, 3) for o in overlay)
    pngs = sorted((out / "labels").glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:08d}.png" for i in range(12)]
    labels = []
    for png in pngs:
        with Image.open(png) as img:
            assert img.mode == "P" and img.size == (64, 48)
            labels.append(np.asarray(img))
    assert max(int(lab.max()) for lab in labels) < 124
    classes = np.unique(np.concatenate([lab.ravel() for lab in labels]))
    for i, (frame, label, got) in enumerate(zip(inputs, labels, overlay)):
        expected = render_overlay(frame, label, VSPW_CLASSES)
        # H.264 4:2:0 halves the chroma resolution: on a 64x48 frame full of class edges that costs a few dB
        assert _psnr(got, expected) > 27, f"overlay frame {i} does not match the overlay of its label PNG"
        other = labels[(i + 6) % 12]
        if (other != label).mean() > 0.2:  # a different label map must be told apart
            assert _psnr(got, render_overlay(frame, other, VSPW_CLASSES)) < _psnr(got, expected) - 3
        if len(classes) > 1:
            _, _, box_w, box_h = legend_box(48, 64, legend_entries(label, VSPW_CLASSES))
            outside = np.ones(label.shape, bool)
            outside[:box_h, :box_w] = False  # the legend box hides the blend
            seen = _recovered_labels(got, frame, classes)
            assert (seen == label)[outside].mean() > 0.9, f"frame {i}: overlay colours do not give back the labels"
    assert "12 frames (12 predicted, 0 reused)" in capsys.readouterr().out


def test_rerun_reuses_labels_and_a_completed_run_is_skipped(assets, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["predict", str(assets["frames_dir"]), "--model", str(assets["model"]), "--out", str(out), "--fps", "10",
            "--side-by-side", *FAST]
    assert main(args) == 0
    first = {p.name: p.read_bytes() for p in (out / "labels").glob("*.png")}
    assert len(first) == 20
    overlay, fps, _ = decode_video(out / "overlay.mp4")
    assert len(overlay) == 20 and fps == Fraction(10) and overlay[0].shape == (48, 128, 3)  # raw | overlay
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(assets["frames_dir"].glob("*.jpg"))]
    left, right = _psnr(overlay[3][:, :64], frames[3]), _psnr(overlay[3][:, 64:], frames[3])
    assert left > 25 and right < left - 5  # the raw frame on the left, the overlay on the right
    capsys.readouterr()
    assert main(args) == 0
    assert "already complete (20 frames)" in capsys.readouterr().out
    # a killed run: overlay never renamed into place, two label PNGs missing
    (out / "overlay.mp4").unlink()
    for name in ("00000004.png", "00000013.png"):
        (out / "labels" / name).unlink()
    assert main(args) == 0
    assert "20 frames (2 predicted, 18 reused)" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in (out / "labels").glob("*.png")} == first
    # other models: earlier labels are not reused
    assert main([*args[:2], "--model", str(assets["model_b"]), *args[4:]]) == 0
    assert "20 frames (20 predicted, 0 reused)" in capsys.readouterr().out
    assert not list(out.rglob("*.tmp"))


def _one_line_error(capsys, code: int, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def _no_output(out: Path) -> None:
    assert not (out / "overlay.mp4").exists()
    assert not list(out.rglob("*.tmp")) if out.exists() else True


def test_bad_videos_get_one_clear_line(assets, tmp_path, capsys):
    model = ["--model", str(assets["model"])]
    data = assets["mp4"].read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    out = tmp_path / "o1"
    _one_line_error(capsys, main(["predict", str(truncated), *model, "--out", str(out), *FAST]), str(truncated), "truncated")
    _no_output(out)
    # moov atom first (faststart), then cut: the header announces more frames than the file holds
    import av

    faststart = tmp_path / "faststart.mp4"
    with av.open(str(assets["mp4"])) as src, av.open(str(faststart), "w", options={"movflags": "faststart"}) as dst:
        s_in = src.streams.video[0]
        s_out = dst.add_stream_from_template(s_in)
        for packet in src.demux(s_in):
            if packet.dts is not None:
                packet.stream = s_out
                dst.mux(packet)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(faststart.read_bytes()[: int(faststart.stat().st_size * 0.6)])
    _one_line_error(capsys, main(["predict", str(cut), *model, "--out", str(tmp_path / "o2"), *FAST]), str(cut), "truncated")
    garbage = tmp_path / "notes.mp4"
    garbage.write_text("not a video at all\n" * 50)
    _one_line_error(capsys, main(["predict", str(garbage), *model, "--out", str(tmp_path / "o3"), *FAST]), str(garbage))
    empty = tmp_path / "empty.mp4"
    with av.open(str(empty), "w") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()  # header written, no frame encoded
    _one_line_error(capsys, main(["predict", str(empty), *model, "--out", str(tmp_path / "o4"), *FAST]), str(empty), "zero frames")
    _no_output(tmp_path / "o4")


def test_bad_folders_and_models_get_one_clear_line(assets, tmp_path, capsys):
    model = ["--model", str(assets["model"])]
    empty = tmp_path / "no_frames"
    empty.mkdir()
    _one_line_error(capsys, main(["predict", str(empty), *model, "--out", str(tmp_path / "o1")]), str(empty), "zero frames")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.new("RGB", (64, 48)).save(mixed / "00000000.jpg")
    Image.new("RGB", (64, 48)).save(mixed / "00000001.jpg")
    Image.new("RGB", (60, 48)).save(mixed / "00000002.jpg")
    _one_line_error(capsys, main(["predict", str(mixed), *model, "--out", str(tmp_path / "o2")]),
                    str(mixed / "00000002.jpg"), "60x48")
    out = tmp_path / "o3"
    code = main(["predict", str(assets["mp4"]), "--model", str(assets["coco"]), "--out", str(out), *FAST])
    _one_line_error(capsys, code, str(assets["coco"]), "label space")
    _no_output(out)
    missing = tmp_path / "missing.mp4"
    _one_line_error(capsys, main(["predict", str(missing), *model, "--out", str(tmp_path / "o4")]), str(missing))


def test_frames_are_streamed_one_at_a_time(assets):
    """iter_frames is a generator over the decoder: the first frame arrives before the rest is decoded."""
    import inspect

    from stcl.infer.video import iter_frames, open_source

    info = open_source(assets["mp4"])
    assert (info.frames, info.height, info.width, info.fps) == (12, 48, 64, Fraction(12))
    frames = iter_frames(info)
    assert inspect.isgenerator(frames)
    first = next(frames)
    assert first.shape == (48, 64, 3) and first.dtype == np.uint8
    assert sum(1 for _ in frames) == 11


def test_overlay_encoder_keeps_odd_sizes_and_leaves_nothing_on_error(tmp_path):
    from stcl.infer.video import OverlayEncoder

    rng = np.random.default_rng(0)
    frames = [np.repeat(rng.integers(0, 256, (1, 1, 3), dtype=np.uint8), 45 * 63, 0).reshape(45, 63, 3) for _ in range(5)]
    with OverlayEncoder(tmp_path / "odd.mp4", 45, 63, Fraction(30000, 1001)) as enc:
        for f in frames:
            enc.write(f)
    decoded, fps, count = decode_video(tmp_path / "odd.mp4")
    assert count == 5 and fps == Fraction(30000, 1001)
    assert [d.shape for d in decoded] == [(45, 63, 3)] * 5
    assert all(_psnr(d, f) > 35 for d, f in zip(decoded, frames))  # flat colours survive 4:4:4 nearly exactly
    with pytest.raises(RuntimeError, match="boom"):
        with OverlayEncoder(tmp_path / "failed.mp4", 48, 64, Fraction(15)) as enc:
            enc.write(np.zeros((48, 64, 3), np.uint8))
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.mp4"]


@pytest.mark.parametrize(("suffix", "codec"), [(".webm", "libvpx-vp9"), (".avi", "mpeg4"), (".mov", "libx264")])
def test_other_containers_are_read_frame_by_frame(tmp_path, suffix, codec):
    import av

    from stcl.infer.video import iter_frames, open_source

    path = tmp_path / f"clip{suffix}"
    rng = np.random.default_rng(1)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(7):
            frame = np.repeat(rng.integers(0, 256, (1, 3), dtype=np.uint8), 48 * 64, 0).reshape(48, 64, 3)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    info = open_source(path)
    assert (info.kind, info.height, info.width, info.fps) == ("video", 48, 64, Fraction(25))
    frames = list(iter_frames(info))
    assert len(frames) == 7 and all(f.shape == (48, 64, 3) for f in frames)
