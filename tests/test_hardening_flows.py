"""A damaged or crafted TC flow cache (`stcl flow` folder) given to `stcl evaluate --flows`: one line naming the
file, exit 1, no metrics written, never a traceback nor a silently wrong TC (issue 29, items 4-5).

Each mutation starts from a real `stcl flow` folder of the tiny TC root (tests/_flow_fixtures.py). Where a
mutated ``<video>.npz`` would be caught by its digest alone, a second variant also rewrites the digest in
``flows.json`` (a consistent forgery), so that the checks behind the digest are exercised too.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from _flow_fixtures import make_tc_root, raft_file
from PIL import Image

from stcl.cli import EXIT_USER_ERROR, main
from stcl.flow.store import OUTSIDE, file_sha256


@pytest.fixture(scope="module")
def tc(module_tmp):
    """(VSPW root, predictions, RAFT file, flows folder of the first 2 val videos, TC of the intact folder)."""
    root = module_tmp("tc_hardening")
    vspw, preds, raft = make_tc_root(root)
    flows = root / "flows"
    assert main(["flow", "--vspw-root", str(vspw), "--weights", str(raft), "--out", str(flows), "--videos", "2"]) == 0
    out = root / "intact.json"
    assert main(_evaluate(vspw, preds, flows, out)) == 0
    return vspw, preds, raft, flows, json.loads(out.read_text())["TC"]


def _evaluate(vspw: Path, preds: Path, flows: Path, out: Path, *extra: str) -> list[str]:
    argv = ["evaluate", "--gt-root", str(vspw), "--pred-root", str(preds), "--flows", str(flows)]
    return [*argv, "--out", str(out), "--details", str(out.with_suffix(".details.json")), "--workers", "1", *extra]


def _index(flows: Path) -> dict:
    return json.loads((flows / "flows.json").read_text())


def _set_index(flows: Path, index: dict) -> None:
    (flows / "flows.json").write_text(json.dumps(index))


def _redigest(flows: Path) -> None:
    """Record the current digest of every npz in flows.json (a forgery consistent with its index)."""
    index = _index(flows)
    for v, entry in index["per_video"].items():
        if (flows / f"{v}.npz").is_file():
            entry["sha256"] = file_sha256(flows / f"{v}.npz")
    _set_index(flows, index)


def _npz(flows: Path, video: str) -> dict[str, np.ndarray]:
    with np.load(flows / f"{video}.npz") as data:
        return {k: data[k] for k in data.files}


def _write_npz(flows: Path, video: str, arrays: dict) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    (flows / f"{video}.npz").write_bytes(buf.getvalue())


def _cut(path: Path, at: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * at)] if at < 1 else data[: len(data) - int(at)])


def _flip(path: Path, start: int, end: int) -> None:
    """Invert bits of bytes ``start:end`` (inside the compressed offsets: zlib or the zip index fails)."""
    data = bytearray(path.read_bytes())
    data[start:end] = bytes(x ^ 0x55 for x in data[start:end])
    path.write_bytes(bytes(data))


def _offset(flows: Path, video: str, change) -> None:  # noqa: ANN001
    arrays = _npz(flows, video)
    arrays["offset"] = change(arrays["offset"].copy())
    _write_npz(flows, video, arrays)


def _wrap_negative(offset: np.ndarray) -> np.ndarray:
    """Offsets reading before pixel 0: numpy's negative indexing would take labels from the frame's end."""
    offset[offset != OUTSIDE] -= offset.shape[-1] * offset.shape[-2]
    return offset


def _past_end(offset: np.ndarray) -> np.ndarray:
    offset[0, -1, -1] = 5
    return offset


def _index_edit(**changes):  # noqa: ANN003
    def edit(flows: Path) -> None:
        index = _index(flows)
        for key, value in changes.items():
            if value is KeyError:
                index.pop(key)
            else:
                index[key] = value
        _set_index(flows, index)

    return edit


def _entry_edit(key: str, value) -> callable:  # noqa: ANN001
    def edit(flows: Path) -> None:
        index = _index(flows)
        index["per_video"]["vid_a"][key] = value
        _set_index(flows, index)

    return edit


def _other_video_same_size(flows: Path) -> None:
    """vid_b's flows (same frame size), cut to vid_a's length, stored as vid_a's (the digest is rewritten after).

    The npz names its video; only a forgery that also rewrites that name would need RAFT run again to catch.
    """
    arrays = _npz(flows, "vid_b")
    arrays["frames"] = arrays["frames"][:3]
    arrays["offset"] = arrays["offset"][:2]
    _write_npz(flows, "vid_a", arrays)


# name → (mutation of the flows folder, redigest the npz files afterwards, the file the error line must name)
MUTATIONS = {
    **{
        f"npz cut at {at}": (lambda f, at=at: _cut(f / "vid_a.npz", at), False, "vid_a.npz")
        for at in (0.0, 0.1, 0.5, 22)
    },
    **{
        f"npz cut at {at}, redigested": (lambda f, at=at: _cut(f / "vid_a.npz", at), True, "vid_a.npz")
        for at in (0.0, 0.1, 0.5, 0.99, 22)
    },
    "npz bytes flipped, redigested": (lambda f: _flip(f / "vid_a.npz", 200, 400), True, "vid_a.npz"),
    "npz deleted": (lambda f: (f / "vid_a.npz").unlink(), False, "vid_a.npz"),
    "npz replaced by vid_b's": (lambda f: shutil.copy(f / "vid_b.npz", f / "vid_a.npz"), False, "vid_a.npz"),
    "npz of another video of the same size, redigested": (_other_video_same_size, True, "vid_a.npz"),
    "npz without offset": (
        lambda f: _write_npz(f, "vid_a", {k: v for k, v in _npz(f, "vid_a").items() if k != "offset"}),
        True,
        "vid_a.npz",
    ),
    "npz offsets float": (lambda f: _offset(f, "vid_a", lambda o: o.astype(np.float32)), True, "vid_a.npz"),
    "npz offsets of another size": (lambda f: _offset(f, "vid_a", lambda o: o[:, :-1]), True, "vid_a.npz"),
    "npz negative offsets (numpy wrap)": (lambda f: _offset(f, "vid_a", _wrap_negative), True, "vid_a.npz"),
    "npz offset past the frame's end": (lambda f: _offset(f, "vid_a", _past_end), True, "vid_a.npz"),
    "npz pickled object array": (
        lambda f: np.savez(f / "vid_a.npz", frames=np.array([{"a": 1}], dtype=object)),
        True,
        "vid_a.npz",
    ),
    **{
        f"index cut at {at}": (lambda f, at=at: _cut(f / "flows.json", at), False, "flows.json")
        for at in (0.0, 0.3, 0.9)
    },
    "index deleted": (lambda f: (f / "flows.json").unlink(), False, "flows.json"),
    "index of an older format": (_index_edit(format="stcl-flows/1"), False, "flows.json"),
    "index a list": (lambda f: (f / "flows.json").write_text("[]"), False, "flows.json"),
    "index without videos": (_index_edit(videos=KeyError), False, "flows.json"),
    "index videos empty": (_index_edit(videos=[], per_video={}, pairs=0), False, "flows.json"),
    "index videos an int": (_index_edit(videos=2), False, "flows.json"),
    "index video outside the folder": (_index_edit(videos=["../VSPW/vid_a", "vid_b"]), False, "flows.json"),
    "index video twice": (_index_edit(videos=["vid_a", "vid_a"]), False, "flows.json"),
    "index video_limit true": (_index_edit(video_limit=True), False, "flows.json"),
    "index of another split": (_index_edit(split="test"), False, "flows.json"),
    "index of other videos": (_index_edit(videos=["vid_b", "vid_a"]), False, "flows.json"),
    "index pairs wrong": (_index_edit(pairs=4), False, "flows.json"),
    "index frame size a string": (_entry_edit("size", "130x140"), False, "flows.json"),
    "index frame size other": (_entry_edit("size", [130, 139]), False, "vid_a.npz"),
    "index frames of other images": (_entry_edit("frames_sha256", "0" * 64), False, "flows.json"),
    "index frame count an int key": (_entry_edit("frames", {"3": 3}), False, "flows.json"),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_damaged_or_crafted_flows_are_one_line_exit_1(tc, tmp_path, capsys, name):
    vspw, preds, _, good, _ = tc
    flows = tmp_path / "flows"
    shutil.copytree(good, flows)
    mutate, redigest, named = MUTATIONS[name]
    mutate(flows)
    if redigest:
        _redigest(flows)
    out = tmp_path / "m.json"
    capsys.readouterr()
    assert main(_evaluate(vspw, preds, flows, out)) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"stcl evaluate: error: {flows / named}:"), lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flows"]  # neither metrics file written


def test_flows_of_another_split_computed_for_real_are_refused(tc, tmp_path, capsys):
    """A real `stcl flow --split test` folder (the same videos, listed in test.txt) given to a val evaluation."""
    vspw, preds, raft, _, _ = tc
    root = tmp_path / "VSPW"
    shutil.copytree(vspw, root)
    (root / "test.txt").write_text("vid_a\n")
    flows = tmp_path / "flows_test"
    assert main(["flow", "--vspw-root", str(root), "--split", "test", "--weights", str(raft), "--out", str(flows)]) == 0
    out = tmp_path / "m.json"
    capsys.readouterr()
    assert main(_evaluate(root, preds, flows, out)) == EXIT_USER_ERROR
    line = capsys.readouterr().err.strip()
    assert line == (
        f"stcl evaluate: error: {flows / 'flows.json'}: flows of split 'test', evaluating split 'val' "
        "(run `stcl flow --split val`)"
    )
    assert not out.exists()


def test_flows_of_other_frames_or_another_raft_file_are_refused(tc, tmp_path, capsys):
    vspw, preds, raft, flows, _ = tc
    root = tmp_path / "VSPW"
    shutil.copytree(vspw, root)
    frame = root / "data" / "vid_b" / "origin" / "00000002.jpg"
    Image.fromarray(255 - np.asarray(Image.open(frame))).save(frame)
    out = tmp_path / "m.json"
    capsys.readouterr()
    assert main(_evaluate(root, preds, flows, out)) == EXIT_USER_ERROR
    line = capsys.readouterr().err.strip()
    assert line.startswith(
        f"stcl evaluate: error: {flows / 'flows.json'}: flows of video vid_b were computed from "
        f"other frames than the 4 of {root / 'data' / 'vid_b' / 'origin'}"
    ), line
    # params naming another RAFT file than the one the flows were computed with
    import torch

    from stcl.flow.raft import official_to_torchvision

    other = tmp_path / "raft_large_C_T_V1.pth"
    torch.save(official_to_torchvision(torch.load(raft, weights_only=True)), other)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"tc": {"raft_weights": str(other)}}))
    assert main(_evaluate(vspw, preds, flows, out, "--params", str(params))) == EXIT_USER_ERROR
    line = capsys.readouterr().err.strip()
    assert line == (
        f"stcl evaluate: error: {flows / 'flows.json'}: flows computed with another RAFT file than "
        f"{other}; run `stcl flow` again"
    )
    params.write_text(yaml.safe_dump({"tc": {"raft_weights": str(raft)}}))
    assert main(_evaluate(vspw, preds, flows, out, "--params", str(params))) == 0  # its own RAFT file: accepted


def test_the_intact_folder_gives_the_tc_it_gave(tc, tmp_path):
    """The checks refuse nothing that is intact: a copy in another place scores the same TC."""
    vspw, preds, _, flows, want = tc
    copy = tmp_path / "elsewhere" / "flows"
    shutil.copytree(flows, copy)
    out = tmp_path / "m.json"
    assert main(_evaluate(vspw, preds, copy, out)) == 0
    assert json.loads(out.read_text())["TC"] == want and 0 < want < 1


def test_a_bad_class_id_names_the_frame_that_holds_it(tc, tmp_path, capsys):
    vspw, preds, _, flows, _ = tc
    bad = tmp_path / "pred"
    shutil.copytree(preds, bad)
    first = bad / "vid_a" / "00000000.png"  # frame t = 0: the first frame of the first pair
    label = np.asarray(Image.open(first)).copy()
    label[0, 0] = 200
    Image.fromarray(label).save(first)
    capsys.readouterr()
    # TC is checked before the other metrics, which would name the same file for their own reason
    assert main(_evaluate(vspw, bad, flows, tmp_path / "m.json")) == EXIT_USER_ERROR
    assert capsys.readouterr().err.strip() == f"stcl evaluate: error: {first}: class id 200 outside 0..123"


def test_the_report_refuses_flows_of_other_frames(tc, tmp_path, capsys):
    vspw, preds, _, flows, _ = tc
    root = tmp_path / "VSPW"
    shutil.copytree(vspw, root)
    frame = root / "data" / "vid_a" / "origin" / "00000000.jpg"
    Image.fromarray(255 - np.asarray(Image.open(frame))).save(frame)
    details = json.loads((flows.parent / "intact.details.json").read_text())
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "ensemble.json").write_text(json.dumps({**details, "model": "ensemble"}))
    out = tmp_path / "report"
    argv = ["report", "--out-dir", str(out), "--metrics-dir", str(tmp_path / "metrics"), "--gt-root", str(root)]
    capsys.readouterr()
    assert main([*argv, "--pred-root", str(preds), "--max-videos", "0", "--flows", str(flows)]) == EXIT_USER_ERROR
    line = capsys.readouterr().err.strip()
    assert line.startswith(f"stcl report: error: {flows / 'flows.json'}: flows of video vid_a were computed from other")
    assert not out.exists()
