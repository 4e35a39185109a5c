"""Val metrics of a finished run's models with the padded sliding window stcl used before mmseg's window
cut, and with today's (`stcl.infer.frames.frame_probs`, as `stcl infer` runs it): the same weights, frames
and TTA, so the difference is the inference alone.

    .venv/bin/python benchmarks/window_metrics.py [--run .] [--threads 2]

``--run`` is a folder where ``snakemake --profile local`` has finished (its params.yaml,
results/models/<stage>/model.pt and the VSPW root it names). Printed per evaluated output (each trained
stage, teacher, ensemble): mIoU / WIoU / VC8 / VC16 (%) before and after, and the share of val pixels whose
label changed. "after" equals what the run's own `stcl evaluate` wrote (results/metrics/<model>.json): a
check that this script runs the frame loop the workflow runs.

The padded window ("before") is `before_tta_probs` of benchmarks/inference_speed.py, kept there only as the
reference of the two benchmarks.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import torch


def _speed_module():
    path = Path(__file__).with_name("inference_speed.py")
    spec = importlib.util.spec_from_file_location("inference_speed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=Path("."), help="folder of a finished local run (default: .)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from tqdm import tqdm

    from stcl import roles
    from stcl.data import vspw
    from stcl.infer.ensemble import load_models, normalized_weights
    from stcl.infer.frames import blend, frame_probs, image_tensor
    from stcl.infer.multiscale import tta_from_params
    from stcl.metrics.evaluate import evaluate_arrays
    from stcl.params import load_params

    before_tta_probs = _speed_module().before_tta_probs
    run = args.run.resolve()
    params = load_params(run / "params.yaml")
    root = run / params.data.vspw_root
    tta = tta_from_params(params.infer, amp="off")
    members = roles.split_members(params, "val")
    models = load_models({m: run / "results" / "models" / m / "model.pt" for m in members})
    outs = {o: role for o, role in roles.outputs(params).items() if o in roles.SPLIT_OUTPUTS["val"]}
    weights = {o: normalized_weights(len(r.members), r.weights) for o, r in outs.items()}
    labels = {k: {o: {} for o in outs} for k in ("before", "after")}
    gts: dict[str, list[np.ndarray]] = {}
    videos = vspw.read_split(root, "val")
    with torch.inference_mode(), tqdm(total=len(videos), unit="video") as bar:
        for video in videos:
            stems = vspw.list_masks(root, video)
            gts[video] = [vspw.load_train_ids(vspw.mask_path(root, video, s)) for s in stems]
            images = [(s, vspw.load_image(vspw.frame_path(root, video, s))) for s in stems]
            for stem, image, probs in frame_probs(models, tta, images):
                padded = {m: before_tta_probs(p, image_tensor(image), tta) for m, p in models.items()}
                for key, per_model in (("after", probs), ("before", padded)):
                    for o, role in outs.items():
                        label = blend(per_model, role.members, weights[o]).argmax(0).to(torch.uint8).numpy()
                        labels[key][o].setdefault(video, []).append(label)
            bar.update()

    def scores(o: str, key: str):
        return evaluate_arrays({v: (gts[v], labels[key][o][v]) for v in videos})

    print(f"{run}: {len(videos)} val videos, {sum(len(g) for g in gts.values())} frames; "
          f"TTA scales {tta.scales}, flip {tta.flip}, crop {tta.window.crop}, stride {tta.window.stride}")
    print(f"{'output':15s} {'mIoU':>15s} {'WIoU':>15s} {'VC8':>15s} {'VC16':>15s}  changed   run's evaluate")
    for o in outs:
        b, a = scores(o, "before"), scores(o, "after")
        cells = [(b.mIoU, a.mIoU), (b.WIoU, a.WIoU), (b.vc[8], a.vc[8]), (b.vc[16], a.vc[16])]
        changed = np.mean(np.concatenate([
            (x != y).ravel() for v in videos for x, y in zip(labels["before"][o][v], labels["after"][o][v])
        ]))
        written = run / "results" / "metrics" / f"{o}.json"
        check = "-"
        if written.is_file():
            data = json.loads(written.read_text())
            check = "equal" if abs(data["mIoU"] - a.mIoU) < 5e-5 else f"differs ({100 * data['mIoU']:.2f})"
        print(f"{o:15s} " + " ".join(f"{100 * x:6.2f} → {100 * y:6.2f}" for x, y in cells)
              + f"  {100 * changed:5.2f}%   {check}")


if __name__ == "__main__":
    main()
