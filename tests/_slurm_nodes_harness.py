"""A real multi-node Slurm cluster for tests: slurmctld on this machine, one slurmd per network namespace.

`NodesCluster(workdir, nodes=2, gpus_per_node=1)` extends the single-node `SlurmCluster` of
tests/_slurm_harness.py (same packages, munge, slurm.conf writer, teardown by PID): it names the nodes and
their addresses. Each node is a network
namespace of the test's own making, with its own address on a private bridge and its own host name:

    this machine (root namespace)         bridge stclbr<id>, 10.231.<k>.254: slurmctld, sbatch, squeue
      ├── namespace stcl<id>n1  veth 10.231.<k>.1   slurmd -N stcln1   (UTS namespace: hostname stcln1)
      └── namespace stcl<id>n2  veth 10.231.<k>.2   slurmd -N stcln2   (UTS namespace: hostname stcln2)

Each slurmd starts as ``nsenter --net=<namespace> unshare --mount --uts``: in its own mount namespace a
hosts file of the workdir is bind-mounted over /etc/hosts, so the node names resolve to the namespaces'
addresses (this machine's /etc/hosts is not touched). ``ip netns exec`` is not used: it remounts /sys,
which hides the cgroup mounts slurmd 22.05 needs. A job step on stcln2 can reach a rank on stcln1 only
through 10.231.<k>.1: each namespace has its own loopback. The file system is shared, as on a cluster. On
exit the daemons are stopped by PID, then the namespaces and the bridge are deleted.

Facts (ip-netns(8), nsenter(1), unshare(1); slurm.conf(5): ``NodeAddr``, ``SlurmctldHost=name(address)``,
``%n`` in slurmd paths).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from _slurm_harness import SlurmCluster, install, unavailable_reason


def nodes_unavailable_reason() -> str | None:
    """None when this machine can run the multi-node test cluster, else why not (the skip reason)."""
    reason = unavailable_reason()
    if reason:
        return reason
    for tool in ("nsenter", "unshare"):
        if shutil.which(tool) is None:
            return f"multi-node Slurm test needs `{tool}` (package util-linux)"
    if shutil.which("ip") is None and shutil.which("apt-get") is None:
        return "multi-node Slurm test needs `ip` (package iproute2) and there is no apt-get to install it"
    return None


def install_network_tools() -> None:
    """apt-get install iproute2 (`ip`) when missing, as `install` does for Slurm's packages."""
    if shutil.which("ip") is not None:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "iproute2"], env=env, capture_output=True, check=True)


def _sh(*argv: str) -> None:
    subprocess.run(list(argv), check=True, capture_output=True, text=True)


class NodesCluster(SlurmCluster):
    """`nodes` Slurm nodes (network namespaces) with `gpus_per_node` fake GPUs each; a context manager."""

    def __init__(self, workdir: Path, nodes: int = 2, gpus_per_node: int = 1, def_mem_per_cpu: int = 500) -> None:
        super().__init__(workdir, gpus=gpus_per_node, def_mem_per_cpu=def_mem_per_cpu)
        tag = os.getpid() % 100000
        self.subnet = f"10.231.{tag % 250}"
        self.ctl_addr = f"{self.subnet}.254"
        self.bridge = f"stclbr{tag}"
        self.node_names = [f"stcln{i}" for i in range(1, nodes + 1)]
        self.netns = [f"stcl{tag}n{i}" for i in range(1, nodes + 1)]
        self.addrs = [f"{self.subnet}.{i}" for i in range(1, nodes + 1)]
        self._made_links: list[str] = []
        self._made_netns: list[str] = []

    # -- network -----------------------------------------------------------------------------------------
    def _network_up(self) -> None:
        _sh("ip", "link", "add", self.bridge, "type", "bridge")
        self._made_links.append(self.bridge)
        _sh("ip", "addr", "add", f"{self.ctl_addr}/24", "dev", self.bridge)
        _sh("ip", "link", "set", self.bridge, "up")
        hosts = "127.0.0.1 localhost\n" + "".join(f"{a} {n}\n" for a, n in zip(self.addrs, self.node_names))
        hosts += f"{self.ctl_addr} {self.host}\n"
        for i, (ns, addr) in enumerate(zip(self.netns, self.addrs), start=1):
            _sh("ip", "netns", "add", ns)
            self._made_netns.append(ns)
            outer, inner = f"{self.bridge}v{i}", f"{self.bridge}p{i}"
            _sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
            self._made_links.append(outer)
            _sh("ip", "link", "set", inner, "netns", ns)
            _sh("ip", "link", "set", outer, "master", self.bridge)
            _sh("ip", "link", "set", outer, "up")
            _sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{addr}/24", "dev", inner)
            _sh("ip", "netns", "exec", ns, "ip", "link", "set", inner, "up")
            _sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "hosts").write_text(hosts)

    def _network_down(self) -> None:
        for ns in reversed(self._made_netns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for link in reversed(self._made_links):
            subprocess.run(["ip", "link", "del", link], capture_output=True)  # veths go with their namespace
        self._made_links, self._made_netns = [], []

    # -- configuration -----------------------------------------------------------------------------------
    def node_addresses(self) -> dict[str, str | None]:
        return dict(zip(self.node_names, self.addrs))

    def controller(self) -> str:
        return f"{self.host}({self.ctl_addr})"

    # -- daemons -----------------------------------------------------------------------------------------
    def start(self) -> None:
        reason = nodes_unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        install()
        install_network_tools()
        self._ensure_hostname()
        self._network_up()
        self.write_config()
        self._start_munge()
        self._start("slurmctld", ["/usr/sbin/slurmctld", "-D", "-i", "-f", str(self.conf)])
        for name, ns in zip(self.node_names, self.netns):
            # Own network, host name and /etc/hosts; each `exec` keeps slurmd's PID the one we started.
            script = (
                f"mount --bind {self.dir / 'hosts'} /etc/hosts && hostname {name}"
                f" && exec /usr/sbin/slurmd -D -N {name} -f {self.conf}"
            )
            argv = ["nsenter", f"--net=/run/netns/{ns}", "--", "unshare", "--mount", "--uts", "--", "sh", "-c", script]
            self._start(f"slurmd-{name}", argv)
        self.wait_idle()

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self._network_down()
