"""Toy metrics of the tiny DINO variants beside the small Swin and ResNet: Table 1's protocol at the embedded
tiny scale.

For each backbone, the on-demand ablation ``baseline_<backbone>`` (stcl.ablations: train_stcl on VSPW only,
no COCO-pre, no STCL, then val inference and the official metrics) runs under the local profile in a copy of
the workflow with params.yaml's tiny defaults (synthetic data, 200 iterations at 96×128) and ``model.backbone``
set; all share the synthetic data of one copy. Val inference is single-scale without flip here (the
defaults' multi-scale + flip takes most of the time on a shared CPU); every backbone gets the same. Prints one row per backbone: parameters, training wall time,
val mIoU / WIoU / VC8 / VC16 / pixel accuracy. CPU minutes per backbone; run it under ``nice``:

    nice -n 15 .venv/bin/python benchmarks/dino_toy.py [--backbones resnet18 swin_mini dinov2_tiny dinov3_tiny]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FILES = ("Snakefile", "params.yaml", "workflow", "local")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", nargs="+", default=["resnet18", "swin_mini", "dinov2_tiny", "dinov3_tiny"])
    ap.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it (default: a temp dir)")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="stcl-dino-toy-"))
    work.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        src, dst = REPO / name, work / name
        if dst.exists():
            continue
        if src.is_symlink():
            dst.symlink_to(src.readlink())
        elif src.is_dir():
            shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    import yaml

    params = yaml.safe_load((work / "params.yaml").read_text())
    params["infer"].update({"scales": [1.0], "flip": False})
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    snakemake = str(Path(sys.executable).parent / "snakemake")
    rows = []
    for backbone in args.backbones:
        target = f"results/ablations/metrics/baseline_{backbone}.json"
        t = time.time()
        proc = subprocess.run([snakemake, "--profile", "local", target], cwd=work, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{backbone}: snakemake failed\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        seconds = time.time() - t
        metrics = json.loads((work / target).read_text())
        from stcl.models import read_model_file

        state = read_model_file(work / f"results/ablations/baseline_{backbone}/model.pt")["state_dict"]
        buffers = ("running_mean", "running_var", "num_batches_tracked")
        params = sum(v.numel() for k, v in state.items() if not k.endswith(buffers))
        rows.append((backbone, params, seconds, metrics))
        print(f"{backbone}: done in {seconds:.0f} s", flush=True)
    print(f"\nTable 1 protocol at the tiny scale (baseline_<backbone>, val; work dir {work})")
    print(f"| backbone | params | wall s | mIoU | WIoU | VC8 | VC16 | pixel acc |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for backbone, params, seconds, m in rows:
        vals = " | ".join(f"{m.get(k, float('nan')):.4f}" for k in ("mIoU", "WIoU", "VC8", "VC16", "pixel_accuracy"))
        print(f"| {backbone} | {params:,} | {seconds:.0f} | {vals} |")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
