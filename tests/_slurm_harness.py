"""A real single-node Slurm cluster for tests: munge + slurmctld + slurmd with fake GPUs.

`SlurmCluster(workdir, gpus=2)` as a context manager installs the Debian packages when missing (root and
apt-get needed; otherwise `unavailable_reason()` says why and the test skips), writes slurm.conf and
gres.conf under `workdir`, starts munged (as user munge), slurmctld and slurmd, waits until the node is
idle, and on exit stops the daemons it started, by PID. Clients (sbatch, squeue, Snakemake's Slurm plugin)
find the cluster through the SLURM_CONF variable in `env()`, and through /etc/slurm/slurm.conf (a link to
ours, made only when that file does not exist, removed on exit): the Slurm jobstep plugin drops SLURM_*
variables, SLURM_CONF included, before the `srun` inside each job.

Facts (Slurm's slurm.conf(5) and gres.conf(5) man pages; Snakemake's Slurm executor plugin docs): no slurmdbd, so `sacct` fails and status goes through `squeue`
with MinJobAge >= 600; DefMemPerCPU so a job does not take the whole node; fake GPUs are character
devices made with `mknod -m 666 PATH c 1 3` listed in gres.conf, so `--gpus=N` jobs schedule and get
CUDA_VISIBLE_DEVICES.

One test cluster at a time on a machine: clusters share /etc/slurm/slurm.conf and munged, so a cluster
holds an exclusive flock on `SlurmCluster.machine_lock` from before it writes its config until its daemons
are stopped. The suite also sends both Slurm modules to one pytest-xdist worker (`xdist_group`); the lock
keeps a second cluster waiting, not broken, where that grouping fails (pytest-xdist#1386: pytest 9.2's
structured node ids drop the group) or where two test sessions run on one machine.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from stcl.runlock import pid_alive, try_flock

SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
LOCK_TIMEOUT_S = 1800.0
PACKAGES = ("munge", "slurmctld", "slurmd", "slurm-client")
DAEMONS = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/bin/sbatch", "/usr/bin/squeue")


def unavailable_reason() -> str | None:
    """None when this machine can run the test cluster, else why not (the skip reason)."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return "Slurm test needs Linux"
    if os.geteuid() != 0:
        return "Slurm test needs root (to install Slurm and run slurmd); run the tests as root or in CI"
    if SYSTEM_CONF.exists() and not SYSTEM_CONF.is_symlink():
        return f"{SYSTEM_CONF} exists: this machine has its own Slurm, which the test must not disturb"
    if all(Path(p).exists() for p in DAEMONS):
        return None
    if shutil.which("apt-get") is None:
        return "Slurm is not installed and there is no apt-get to install it (packages: " + " ".join(PACKAGES) + ")"
    return None


def install() -> None:
    """apt-get install the Slurm packages if any daemon or client is missing."""
    if all(Path(p).exists() for p in DAEMONS):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    result = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES], env=env,
                            capture_output=True, text=True)
    if result.returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES], env=env,
                       capture_output=True, text=True, check=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlurmCluster:
    """One-node Slurm in `workdir` with `gpus` fake GPUs; a context manager."""

    machine_lock = Path("/run/lock/stcl-test-slurm.lock")  # one test cluster per machine

    def __init__(self, workdir: Path, gpus: int = 2, def_mem_per_cpu: int = 1000) -> None:
        self.dir = Path(workdir)
        self.gpus = gpus
        self.def_mem_per_cpu = def_mem_per_cpu
        self.host = socket.gethostname().split(".")[0]
        self.conf = self.dir / "slurm.conf"
        self._started: list[tuple[str, int]] = []  # (name, pid) of daemons this object started
        self._procs: list[subprocess.Popen] = []
        self._linked_conf = False
        self._lock_fd: int | None = None

    def env(self) -> dict[str, str]:
        """os.environ plus SLURM_CONF pointing at this cluster (pass to every client command)."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    # -- setup ------------------------------------------------------------------------------------------
    def _node_line(self) -> tuple[int, int]:
        out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
        fields = dict(tok.split("=", 1) for tok in out.split() if "=" in tok)
        return int(fields["CPUs"]), int(fields["RealMemory"])

    def _ensure_hostname(self) -> None:
        try:
            socket.gethostbyname(self.host)
        except OSError:
            with open("/etc/hosts", "a") as fh:
                fh.write(f"127.0.0.1 {self.host}\n")

    def node_addresses(self) -> dict[str, str | None]:
        """Node name → its NodeAddr (None: the name resolves to this machine)."""
        return {self.host: None}

    def controller(self) -> str:
        """slurm.conf's SlurmctldHost: ``name`` or ``name(address)``."""
        return self.host

    def write_config(self) -> None:
        """slurm.conf and gres.conf of the nodes `node_addresses` names (each slurmd's spool, PID and log file
        named by ``%n``), the fake GPU devices, and the /etc/slurm/slurm.conf link."""
        d = self.dir
        nodes = self.node_addresses()
        for sub in ("state", "dev", "log", *(f"spool/{name}" for name in nodes)):
            (d / sub).mkdir(parents=True, exist_ok=True)
        for i in range(self.gpus):
            dev = d / "dev" / f"fakegpu{i}"
            if not dev.exists():
                subprocess.run(["mknod", "-m", "666", str(dev), "c", "1", "3"], check=True)
        cpus, mem = self._node_line()
        mem = max(1000, mem - 1000)
        self.cpus, self.mem_mb = cpus, mem
        node_lines = "".join(
            f"NodeName={name}" + (f" NodeAddr={addr}" if addr else "")
            + f" CPUs={cpus} RealMemory={mem} Gres=gpu:{self.gpus} State=UNKNOWN\n"
            for name, addr in nodes.items()
        )
        names = ",".join(nodes)
        ctl_port, d_port = _free_port(), _free_port()
        self.conf.write_text(
            f"""# {len(nodes)}-node test cluster written by tests/_slurm_harness.py
ClusterName=stcltest
SlurmctldHost={self.controller()}
SlurmctldPort={ctl_port}
SlurmdPort={d_port}
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool/%n
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd-%n.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
MinJobAge=600
DefMemPerCPU={self.def_mem_per_cpu}
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmctldTimeout=30
SlurmdTimeout=30
{node_lines}PartitionName=debug Nodes={names} Default=YES MaxTime=INFINITE State=UP
"""
        )
        files = f"{d}/dev/fakegpu[0-{self.gpus - 1}]" if self.gpus > 1 else f"{d}/dev/fakegpu0"
        (d / "gres.conf").write_text(f"NodeName={names} Name=gpu File={files}\n")
        if SYSTEM_CONF.is_symlink():
            SYSTEM_CONF.unlink()  # left by an earlier run that was killed
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONF.symlink_to(self.conf)
        self._linked_conf = True

    def _start_munge(self) -> None:
        pidfile = Path("/run/munge/munged.pid")
        if pidfile.exists():
            try:
                if pid_alive(int(pidfile.read_text().strip())):
                    return  # someone else's munged: use it, leave it running
            except ValueError:
                pass
        run_dir = Path("/run/munge")
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(run_dir, "munge", "munge")
        if not Path("/etc/munge/munge.key").exists():
            subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/mungekey", "--create"], check=True)
        subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)
        for _ in range(50):
            if pidfile.exists() and pidfile.read_text().strip():
                self._started.append(("munged", int(pidfile.read_text().strip())))
                return
            time.sleep(0.1)
        raise RuntimeError("munged did not write /run/munge/munged.pid")

    def _start(self, name: str, argv: list[str]) -> None:
        log = open(self.dir / "log" / f"{name}.out", "w")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env(), start_new_session=True)
        self._procs.append(proc)
        self._started.append((name, proc.pid))

    def start(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        install()
        self._ensure_hostname()
        self.write_config()
        self._start_munge()
        # -D: stay in the foreground so the PID is ours; -i: ignore stale state; -f: our config.
        self._start("slurmctld", ["/usr/sbin/slurmctld", "-D", "-i", "-f", str(self.conf)])
        self.wait_controller()  # slurmd registers with a controller that answers
        self._start("slurmd", ["/usr/sbin/slurmd", "-D", "-f", str(self.conf)])
        self.wait_idle()

    def wait_controller(self, timeout: float = 60) -> None:
        """Until `scontrol ping` reports the controller UP (or a daemon exits, or ``timeout`` s pass)."""
        deadline = time.time() + timeout
        answer = ""
        while time.time() < deadline:
            for proc in self._procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"Slurm daemon exited early; logs in {self.dir / 'log'}:\n{self.logs()}")
            r = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, env=self.env())
            answer = r.stdout.strip()
            if r.returncode == 0 and "UP" in answer:
                return
            time.sleep(0.1)
        raise RuntimeError(f"slurmctld not answering after {timeout}s ({answer!r}):\n{self.logs()}")

    def wait_idle(self, timeout: float = 60) -> None:
        """Until every node reports idle (`sinfo` prints one state per node), a daemon exits, or ``timeout`` s pass."""
        deadline = time.time() + timeout
        states: list[str] = []
        while time.time() < deadline:
            for proc in self._procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"Slurm daemon exited early; logs in {self.dir / 'log'}:\n{self.logs()}")
            r = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True, text=True, env=self.env())
            states = r.stdout.split("\n")
            idle = {line.split()[0] for line in states if len(line.split()) == 2 and line.split()[1].startswith("idle")}
            if r.returncode == 0 and idle == set(self.node_addresses()):
                return
            time.sleep(0.5)
        raise RuntimeError(f"Slurm nodes not idle after {timeout}s (sinfo: {states!r}):\n{self.logs()}")

    def logs(self) -> str:
        parts = []
        for f in sorted((self.dir / "log").glob("*")):
            parts.append(f"== {f.name}\n{f.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    # -- teardown ---------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop the daemons this object started, by PID (SIGTERM, then SIGKILL after 10 s)."""
        for name, pid in reversed(self._started):
            if not pid_alive(pid):
                continue
            os.kill(pid, 15)
            for _ in range(100):
                proc = next((p for p in self._procs if p.pid == pid), None)
                if proc is not None and proc.poll() is not None:
                    break
                if proc is None and not pid_alive(pid):
                    break
                time.sleep(0.1)
            else:
                if pid_alive(pid):
                    os.kill(pid, 9)
        self._started.clear()
        if self._linked_conf and SYSTEM_CONF.is_symlink() and SYSTEM_CONF.readlink() == self.conf:
            SYSTEM_CONF.unlink()
            self._linked_conf = False

    def acquire_machine(self, timeout: float = LOCK_TIMEOUT_S) -> None:
        """Wait until no other test cluster runs on this machine (`machine_lock`), then hold the lock."""
        lock = self.machine_lock
        lock.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.time() + timeout
        while (fd := try_flock(lock)) is None:
            if time.time() > deadline:
                raise RuntimeError(f"another test Slurm cluster held {lock} for over {timeout:.0f} s")
            time.sleep(0.5)
        self._lock_fd = fd

    def release_machine(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    def __enter__(self) -> "SlurmCluster":
        self.acquire_machine()
        try:
            self.start()
        except BaseException:
            try:
                self.stop()
            finally:
                self.release_machine()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            self.release_machine()
