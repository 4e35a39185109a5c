"""Probe `stcl` with interruptions, full disks, a busy output folder, a truncated checkpoint, unreadable
data and the damaged inputs of issue 29 (a run killed after its final checkpoint, a damaged flow cache, a
malformed weights file, STCL_HOLD naming a regular file); print one row per probe (what the user sees: exit
code, stderr lines, the last line).

    .venv/bin/python benchmarks/hardening_probes.py                      # this checkout
    .venv/bin/python benchmarks/hardening_probes.py --src /old/checkout/src   # another version of stcl

Real subprocesses and real signals (a Ctrl-C is SIGINT to the process group). The full-disk probes mount a
small tmpfs and the permission probe runs `check-data` as root without CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH (setpriv): both need root and are
reported as "skipped" otherwise. The flow-cache probes take the tests' TC root and RAFT file
(tests/_flow_fixtures.py): the embedded frames are smaller than RAFT's 128 pixels. Takes a few minutes on a
CPU (embedded data, a tiny model).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


class Probe:
    def __init__(self, work: Path, src: Path | None) -> None:
        self.work = work
        self.env = {**os.environ, "OMP_NUM_THREADS": "1"}
        if src is not None:
            self.env["PYTHONPATH"] = str(src)
        self.rows: list[tuple[str, str]] = []

    def start(self, *args: str, out: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
        stdout = open(out, "w") if out else subprocess.PIPE  # noqa: SIM115 (closed with the process)
        return subprocess.Popen([sys.executable, "-m", "stcl", *args], cwd=self.work, env={**self.env, **(env or {})},
                                text=True, stdout=stdout, stderr=subprocess.PIPE, start_new_session=True,
                                preexec_fn=default_sigint)

    def run(self, *args: str, prefix: tuple[str, ...] = (), env: dict | None = None) -> subprocess.CompletedProcess:
        cmd = [*prefix, sys.executable, "-m", "stcl", *args]
        return subprocess.run(cmd, cwd=self.work, env={**self.env, **(env or {})}, text=True, capture_output=True,
                              timeout=1200)

    def record(self, name: str, rc: int | None, stderr: str, extra: str = "") -> None:
        lines = stderr.strip().splitlines()
        tb = " traceback," if "Traceback" in stderr else ""
        last = lines[-1][:110] if lines else ""
        self.rows.append((name, f"exit {rc};{tb} {len(lines)} stderr lines; last: `{last}`{extra}"))
        print(f"{name}: {self.rows[-1][1]}", flush=True)


def default_sigint() -> None:
    """In the child: SIGINT as in a terminal (a background job of a script inherits it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(cond, proc: subprocess.Popen, timeout: float = 600) -> bool:
    end = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None or time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def setup(p: Probe) -> None:
    data = yaml.safe_load((REPO / "params.yaml").read_text())
    data["synth"].update(frames_per_video=20, videos={"train": 2, "val": 2, "test": 2})
    data["synth"].update(coco_images={"train": 4, "val": 2, "test": 0}, ade_images={"train": 4, "val": 2, "test": 0})
    data["train_stcl"].update(iters=200, checkpoint_every=2, log_every=1, init=None)
    data["infer"].update(scales=[1.0], flip=False)
    (p.work / "params.yaml").write_text(yaml.safe_dump(data))
    data["train_stcl"].update(iters=2)
    (p.work / "short.yaml").write_text(yaml.safe_dump(data))
    for args in (("synth", "--out", "data"), ("prepare", "--out", "results/prepare")):
        assert p.run(*args).returncode == 0
    code = (
        "import torch; from stcl.params import load_params; from stcl.models import build_segmentor, save_model; "
        "from stcl.data.classes import VSPW_CLASSES; torch.manual_seed(0); m = load_params('params.yaml').model; "
        "save_model('model.pt', build_segmentor(m, 124), model_params=m, num_classes=124, proj_dim=None, "
        "label_space='vspw', class_names=VSPW_CLASSES)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=p.work, env=p.env, check=True)
    for split in ("val", "test"):
        assert p.run(*infer(split, f"pred/{split}")).returncode == 0


def infer(split: str, out: str) -> tuple[str, ...]:
    """`stcl infer` of the one model ``m`` (model.pt) on a split of the embedded VSPW root into ``out``."""
    return ("infer", "--checkpoint", "m=model.pt", "--root", "data/VSPW_480p", "--split", split,
            "--output", f"m=m={out}", "--device", "cpu")


TRAIN = ("train", "--stage", "train_stcl", "--device", "cpu", "--out")


def probe_signals(p: Probe) -> None:
    proc = p.start(*TRAIN, "sigint")
    if wait_for(lambda: (p.work / "sigint/state/iter_00000002.pt").exists(), proc):
        os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=600)
    ckpts = sorted(p.work.glob("sigint/state/iter_*.pt"))
    p.record("Ctrl-C during stcl train", proc.returncode, err, f"; newest checkpoint {ckpts[-1].name if ckpts else None}")
    for sig, group in ((signal.SIGINT, True), (signal.SIGTERM, False)):
        out = p.work / f"pred_{sig.name}"
        proc = p.start(*infer("val", out.name))
        if wait_for(lambda: out.is_dir() and any(not q.name.startswith(".") for q in out.iterdir()), proc):
            os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
        _, err = proc.communicate(timeout=600)
        tmp = [q.name for q in out.iterdir() if q.name.endswith(".tmp")] if out.is_dir() else []
        p.record(f"{'Ctrl-C' if group else 'SIGTERM'} during stcl infer", proc.returncode, err, f"; temporaries left {len(tmp)}")


def probe_full_disk(p: Probe) -> None:
    cases = {
        "synth": (["synth", "--out", "{d}/data"], "256k", 0),
        "prepare": (["prepare", "--out", "{d}/prepare"], "8k", 4096),
        "train checkpoint": (["train", "--stage", "train_stcl", "--params", "short.yaml", "--device", "cpu",
                              "--out", "{d}/train"], "4m", 0),
        "infer predictions": (list(infer("val", "{d}/pred")), "16k", 0),
        "evaluate metrics": (["evaluate", "--gt-root", "data/VSPW_480p", "--pred-root", "pred/val", "--out",
                              "{d}/m/model.json"], "4k", 4096),
        "submit zip": (["submit", "--pred", "pred/test", "--root", "data/VSPW_480p", "--out", "{d}/s/sub.zip"], "8k", 0),
    }
    for name, (args, size, filler) in cases.items():
        disk = p.work / f"disk_{name.split()[0]}"
        disk.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)]).returncode != 0:
            p.rows.append((f"full disk: {name}", "skipped (cannot mount a tmpfs: needs root)"))
            continue
        try:
            if filler:
                (disk / "filler").write_bytes(b"x" * filler)
            done = p.run(*[a.format(d=disk) for a in args])
            left = [str(Path(r, n).relative_to(disk)) for r, ds, fs in os.walk(disk) for n in ds + fs
                    if n.endswith(".tmp") or (Path(r, n).is_dir() and not any(Path(r, n).iterdir()))]
            p.record(f"full disk: {name}", done.returncode, done.stderr.replace(str(disk), "DISK"),
                     f"; temporaries/empty folders left {len(left)}")
        finally:
            subprocess.run(["umount", str(disk)], check=True)


def probe_lock_and_resume(p: Probe) -> None:
    state = p.work / "busy/state"
    first = p.start(*TRAIN, "busy")
    wait_for(lambda: (state / "iter_00000002.pt").exists(), first)
    second = p.start(*TRAIN, "busy")
    try:
        _, err = second.communicate(timeout=120)
        extra = ""
    except subprocess.TimeoutExpired:
        second.kill()
        _, err = second.communicate()
        extra = "; still training beside the first after 120 s (killed)"
    p.record("second stcl train on the same --out", second.returncode, err, extra + f"; first still running: {first.poll() is None}")
    wait_for(lambda: len(list(state.glob("iter_*.pt"))) >= 2, first)  # two kept: the newest has a predecessor
    first.kill()
    first.communicate()
    newest = sorted(state.glob("iter_*.pt"))[-1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    log = p.work / "resume.out"
    again = p.start(*TRAIN, "busy", out=log)
    wait_for(lambda: "resuming" in log.read_text(), again, timeout=300)
    again.kill()
    _, err = again.communicate()
    resumed = [line for line in log.read_text().splitlines() if "resuming" in line]
    warned = [line for line in err.splitlines() if "warning" in line]
    p.record(f"truncated newest checkpoint ({newest.name})", None if resumed else again.returncode,
             "\n".join(warned) or err, f"; {resumed[0] if resumed else 'did not resume'}")
    done = p.run("train", "--stage", "train_stcl", "--device", "cpu", "--params", "short.yaml", "--out", "busy")
    taken = [line for line in done.stdout.splitlines() if "stale lock" in line]
    p.record("stale lock after kill -9 of the holder", done.returncode, done.stderr, f"; {taken[0][:100] if taken else 'no lock message'}")


def probe_permissions(p: Probe) -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        p.rows.append(("permission denied in check-data", "skipped (needs root and setpriv)"))
        return
    top = Path(tempfile.mkdtemp(prefix="stcl-perm-"))
    try:
        root = top / "VSPW_480p"
        shutil.copytree(p.work / "data/VSPW_480p", root)
        for q in [top, *top.rglob("*")]:
            os.chmod(q, 0o755 if q.is_dir() else 0o644)
        video, other = sorted((root / "data").iterdir())[:2]  # the two train videos
        next((other / "mask").glob("*.png")).unlink()  # an ordinary problem in a readable video
        os.chmod(video, 0), os.chmod(root / "val.txt", 0)
        # root without the two capabilities that override chmod 000: denied, yet it reads a checkout in a 0700 folder
        drop = "-dac_override,-dac_read_search"
        done = p.run("check-data", str(root), prefix=("setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}"))
        p.record("permission denied in check-data (+1 missing mask)", done.returncode, done.stderr,
                 f"; stdout: `{done.stdout.strip().splitlines()[-1][:100] if done.stdout.strip() else ''}`")
    finally:
        for q in (video, root / "val.txt"):
            os.chmod(q, 0o755)
        shutil.rmtree(top)


def probe_finished_run(p: Probe) -> None:
    """Killed (SIGKILL) after the final checkpoint is on disk, before model.pt: the rerun writes model.pt from it."""
    fifo = p.work / "final.fifo"
    os.mkfifo(fifo)
    short = ("train", "--stage", "train_stcl", "--params", "short.yaml", "--device", "cpu", "--out", "finished")
    first = p.start(*short, env={"STCL_HOLD": f"train.checkpoint.2={fifo}"})  # waits on the pipe after iteration 2
    held = wait_for(lambda: (p.work / "finished/state/iter_00000002.pt").exists(), first)
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate()
    if not held or (p.work / "finished/model.pt").exists():
        p.rows.append(("killed between the final checkpoint and model.pt, rerun", "setup failed (no final checkpoint)"))
        return
    done = p.run(*short)
    said = [line for line in done.stdout.splitlines() if "(no training)" in line]
    lines = (done.stdout + done.stderr).splitlines()
    trained = [line for line in lines if "loss=" in line or "starting afresh" in line or "resuming" in line]
    says = "says `… from it (no training)`" if said else "no `(no training)` line"
    p.record("killed between the final checkpoint and model.pt, rerun", done.returncode, done.stderr,
             f"; model.pt written: {(p.work / 'finished/model.pt').exists()}; {says}; trained again: {bool(trained)}")


def probe_damaged_inputs(p: Probe) -> None:
    """A damaged flow cache for `evaluate --flows`, malformed weights for `stcl weights`, STCL_HOLD on a file."""
    sys.path.insert(0, str(REPO / "tests"))
    # the tests' TC root: frames of 130×140 (RAFT needs 128 pixels a side; the embedded frames are 96×128), GT,
    # predictions moving with the frames, and the seeded RAFT file (official layout)
    from _flow_fixtures import make_tc_root

    from stcl.flow.store import file_sha256

    (p.work / "tc_root").mkdir()
    vspw, preds, raft = make_tc_root(p.work / "tc_root")
    made = p.run("flow", "--vspw-root", str(vspw), "--weights", str(raft), "--out", "flows", "--videos", "1",
                 "--device", "cpu")
    evaluate = ("evaluate", "--gt-root", str(vspw), "--pred-root", str(preds), "--flows", "flows", "--workers", "1")
    if made.returncode != 0:
        p.record("stcl flow (setup of the flow-cache probes)", made.returncode, made.stderr)
    else:
        intact = p.run(*evaluate, "--out", "tc/intact.json")
        tc = json.loads((p.work / "tc/intact.json").read_text()).get("TC") if intact.returncode == 0 else None
        p.record("evaluate --flows, intact cache", intact.returncode, intact.stderr, f"; TC {tc}")
        npz = next((p.work / "flows").glob("*.npz"))
        npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
        for name, forge in (("truncated npz", False), ("truncated npz, its digest rewritten in flows.json", True)):
            if forge:
                index = json.loads((p.work / "flows/flows.json").read_text())
                index["per_video"][npz.stem]["sha256"] = file_sha256(npz)
                (p.work / "flows/flows.json").write_text(json.dumps(index))
            out = p.work / f"tc/{'forged' if forge else 'damaged'}.json"
            done = p.run(*evaluate, "--out", str(out))
            p.record(f"evaluate --flows, {name}", done.returncode, done.stderr, f"; metrics written: {out.exists()}")
    code = ("import torch, sys; torch.save({'state_dict': {'conv1.weight': 'abc', 'bn1.weight': torch.ones(2)}}, "
            "'bad_value.pth'); torch.save({'state_dict': {3: torch.ones(2)}}, 'int_key.pth')")
    subprocess.run([sys.executable, "-c", code], cwd=p.work, env=p.env, check=True)
    for file, what in (("bad_value.pth", "a value that is a string"), ("int_key.pth", "an int key")):
        done = p.run("weights", file)
        p.record(f"stcl weights, {what}", done.returncode, done.stderr)
    (p.work / "plain.txt").write_text("not a pipe\n")
    done = p.run("params", env={"STCL_HOLD": f"command.params={p.work / 'plain.txt'}"})
    p.record("STCL_HOLD naming a regular file", done.returncode, done.stderr.replace(str(p.work), "WORK"))


PROBES = {"signals": probe_signals, "disk": probe_full_disk, "lock": probe_lock_and_resume, "perms": probe_permissions,
          "finished": probe_finished_run, "damaged": probe_damaged_inputs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, help="the src/ folder of the stcl to probe (default: the installed one)")
    parser.add_argument("--only", nargs="+", choices=list(PROBES), default=list(PROBES), help="probe groups to run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stcl-probes-") as tmp:
        p = Probe(Path(tmp), args.src)
        setup(p)
        for group in args.only:
            PROBES[group](p)
    print("\n| probe | outcome |\n|---|---|")
    for name, outcome in p.rows:
        print(f"| {name} | {outcome.replace('|', '/')} |")
    print(json.dumps({"src": str(args.src) if args.src else "installed"}))


if __name__ == "__main__":
    main()
