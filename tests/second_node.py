"""A second Docker engine on this host, as a second swarm node: its own dockerd in a network
namespace of its own, linked to the host by a veth pair (its own address, its own route to
the manager), so that Swarm sees two machines: the manager's address on the host's default
route, the second node's on the link.

What a real second machine would have and this one has not, made here: a registry it reaches
under the same name as the manager does. Services pin images as ``127.0.0.1:PORT/...@sha256``
(a loopback registry needs no TLS on any engine); inside the namespace a forwarder listens on
that loopback port and carries the bytes to the registry on the host's end of the link.
"""

from __future__ import annotations

import contextlib
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests import services

# Carries one TCP port of the namespace's loopback to an address outside it (asyncio: a few
# lines, no dependency, as many connections as the engine opens for its layer downloads).
FORWARDER = """
import asyncio, sys
listen_port, host, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])

async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()

async def handle(reader, writer):
    try:
        up_reader, up_writer = await asyncio.open_connection(host, port)
    except OSError:
        writer.close()
        return
    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""


def _ip(*args: str, netns: str | None = None) -> None:
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()}")


def _inside(netns: str) -> list[str]:
    """A command's prefix that runs it in the namespace's network only: not `ip netns exec`,
    which also gives it a mount namespace with a sysfs of its own, where dockerd finds no
    cgroup mounted ("Devices cgroup isn't mounted")."""
    return ["nsenter", f"--net=/run/netns/{netns}"]


def _free_subnet() -> int:
    """A 10.213.N.0/24 no interface of this host uses."""
    used = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    for _ in range(100):
        n = secrets.randbelow(250) + 2
        if f" 10.213.{n}." not in used:
            return n
    raise RuntimeError("no free 10.213.N.0/24 subnet for the second node's link")


@dataclass
class SecondNode:
    netns: str
    address: str  # the node's address on the link (its swarm advertise address)
    host_address: str  # the host's end of the link
    hostname: str  # the node's name in the swarm
    root: Path
    log: Path
    dockerd: subprocess.Popen[bytes]
    forwarders: list[subprocess.Popen[bytes]]
    host_link: str

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    def client(self) -> Any:
        import docker

        return docker.DockerClient(base_url=f"unix://{self.socket}", timeout=60)

    def forward_registry(self, registry_port: int) -> None:
        """The registry at the host's 127.0.0.1:PORT, at the same address inside the node."""
        log = self.root / f"forward-{registry_port}.log"
        cmd = [*_inside(self.netns), sys.executable, "-c", FORWARDER]
        cmd += [str(registry_port), self.host_address, str(registry_port)]
        self.forwarders.append(services._spawn(cmd, log, self.root))

    def cut_link(self) -> None:
        """The node lost, as a machine whose network went: its end of the link down."""
        _ip("link", "set", self.host_link, "down")

    def restore_link(self) -> None:
        """Its network back: the link up again (the node's agent reconnects by itself)."""
        _ip("link", "set", self.host_link, "up")

    def stop(self) -> None:
        """Its containers, the engine (SIGKILL after a minute), the forwarders, the link and
        the namespace. The engine's own mounts live in its private mount namespace and go
        when its last process does: its containers are removed first for that."""
        with contextlib.suppress(Exception):
            client = self.client()
            try:
                for container in client.containers.list(all=True):
                    with contextlib.suppress(Exception):
                        container.remove(force=True)
            finally:
                client.close()
        for proc in [*self.forwarders, self.dockerd]:
            with contextlib.suppress(Exception):
                services._stop(proc, timeout=60)
        with contextlib.suppress(Exception):
            _ip("link", "del", self.host_link)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)


def dockerd_args(root: Path, *more: str) -> list[str]:
    """A dockerd of our own under ``root``: its socket (``root/docker.sock``), data, exec root
    and pidfile there; no default bridge and no iptables rules (its containers use the host's
    network, as ours do), so it changes nothing of the host's engine."""
    return [
        "dockerd",
        f"--host=unix://{root / 'docker.sock'}",
        f"--data-root={root / 'data'}",
        f"--exec-root={root / 'exec'}",
        f"--pidfile={root / 'dockerd.pid'}",
        "--bridge=none",
        "--iptables=false",
        "--ip6tables=false",
        *more,
    ]


def start_second_node(tmp: Path, manager: str | None = None, tcp_port: int = 0) -> SecondNode:
    """The namespace, the link and the engine: a second node for a swarm whose manager
    advertises the host address ``manager``, or (``tcp_port``) a second host whose engine
    also listens on ``tcp://ADDRESS:PORT``, as a remote engine does. Skipped (failed in CI)
    where this host cannot make a network namespace or start a dockerd in it."""
    missing = [t for t in ("ip", "nsenter", "unshare", "dockerd") if shutil.which(t) is None]
    if missing:
        services.service_missing(f"a second node needs {', '.join(missing)} (iproute2, util-linux)")
    tag = secrets.token_hex(3)
    netns, host_link, node_link = f"mlops-n2-{tag}", f"mlh{tag}", f"mln{tag}"
    n = _free_subnet()
    host_address, address = f"10.213.{n}.1", f"10.213.{n}.2"
    # A short root: containerd's socket lives under --exec-root, and a unix socket's path may
    # not be longer than 107 bytes (pytest's tmp_path is too long for it).
    root = Path(tempfile.mkdtemp(prefix="mlops-node2-", dir="/tmp"))
    log = tmp / "dockerd-node2.log"
    try:
        _ip("netns", "add", netns)
        _ip("link", "add", host_link, "type", "veth", "peer", "name", node_link, "netns", netns)
        _ip("addr", "add", f"{host_address}/24", "dev", host_link)
        _ip("link", "set", host_link, "up")
        _ip("link", "set", "lo", "up", netns=netns)
        _ip("addr", "add", f"{address}/24", "dev", node_link, netns=netns)
        _ip("link", "set", node_link, "up", netns=netns)
        _ip("route", "add", "default", "via", host_address, netns=netns)
        # The host speaks to the node from the manager's advertised address, as a second
        # machine would see it: the overlay's VXLAN packets from any other source address
        # (the link's own, which the kernel would pick) are dropped by the node's overlay.
        if manager:
            _ip("route", "replace", f"10.213.{n}.0/24", "dev", host_link, "src", manager)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=30)
        shutil.rmtree(root, ignore_errors=True)
        services.service_missing(f"no network namespace for a second node here: {exc}")
    # A host name of its own too (a UTS namespace): Swarm and `deploy ps` name nodes by it.
    # And a mount namespace with a sysfs of the node's network (the overlay's bridge is set up
    # through /sys/class/net, which shows the network of whoever mounted it), the host's
    # cgroup hierarchies bound back under it (dockerd needs them; a bare sysfs has none).
    # A containerd of the host's (/run/containerd, as Docker CE runs one) would be used by
    # dockerd instead of one of its own, outside this mount namespace: it is hidden here.
    hostname = f"mlops-node2-{tag}"
    listen = [f"--host=tcp://{address}:{tcp_port}"] if tcp_port else []
    engine = shlex.join(dockerd_args(root, *listen))
    cgroups = shlex.quote(str(root / "cgroup"))
    script = (
        f"set -e; mkdir -p {cgroups}; mount --rbind /sys/fs/cgroup {cgroups}; "
        f"mount -t sysfs sysfs /sys; mount --rbind {cgroups} /sys/fs/cgroup; "
        "if [ -d /run/containerd ]; then mount -t tmpfs tmpfs /run/containerd; fi; "
        f"hostname {shlex.quote(hostname)}; exec {engine}"
    )
    cmd = [*_inside(netns), "unshare", "--mount", "--uts", "sh", "-c", script]
    try:
        dockerd = services._spawn(cmd, log, tmp)
    except OSError:
        subprocess.run(["ip", "link", "del", host_link], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=30)
        shutil.rmtree(root, ignore_errors=True)
        raise
    node = SecondNode(netns, address, host_address, hostname, root, log, dockerd, [], host_link)
    services.remember_log("second node's dockerd", log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            client = node.client()
            try:
                if client.ping():
                    return node
            finally:
                client.close()
        if node.dockerd.poll() is not None:
            break
        time.sleep(0.5)
    node.stop()
    raise AssertionError(f"the second node's dockerd did not answer:\n{services._tail(log)}")


@dataclass
class SshAccess:
    """An sshd on a node's address whose sessions' `docker` is the node's engine, and a home
    for this host's side that reaches it as ``root@ADDRESS`` (its key and known_hosts)."""

    url: str  # ssh://root@ADDRESS, as DOCKER_HOST takes it
    home: Path  # HOME for a client: ~/.ssh/config names the key, ~/.ssh/known_hosts the host
    sshd: subprocess.Popen[bytes]

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            services._stop(self.sshd, timeout=30)


def start_sshd(node: SecondNode, tmp: Path) -> SshAccess:
    """sshd in the node's network, as on a machine of its own: key login as root only, and
    ``SetEnv DOCKER_HOST`` so that `docker system dial-stdio` (what an ssh:// engine runs
    there) reaches the node's engine, not the host's."""
    sshd = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else "")
    if not sshd or shutil.which("ssh-keygen") is None:
        services.service_missing("an ssh:// engine needs sshd and ssh-keygen (openssh-server)")
    keys = tmp / "ssh"
    keys.mkdir(exist_ok=True)
    for name in ("host_key", "client_key"):
        cmd = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=30)
    (keys / "authorized_keys").write_text((keys / "client_key.pub").read_text())
    config = keys / "sshd_config"
    config.write_text(
        f"ListenAddress {node.address}:22\n"
        f"HostKey {keys / 'host_key'}\n"
        f"AuthorizedKeysFile {keys / 'authorized_keys'}\n"
        f"PidFile {keys / 'sshd.pid'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        f"SetEnv DOCKER_HOST=unix://{node.socket}\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # its privilege separation directory
    log = tmp / "sshd.log"
    proc = services._spawn([*_inside(node.netns), sshd, "-D", "-e", "-f", str(config)], log, tmp)
    services.remember_log("second node's sshd", log)
    home = tmp / "ssh-home"
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    host_key = (keys / "host_key.pub").read_text().split()
    (home / ".ssh" / "known_hosts").write_text(f"{node.address} {host_key[0]} {host_key[1]}\n")
    (home / ".ssh" / "config").write_text(
        f"Host {node.address}\n  User root\n  IdentityFile {keys / 'client_key'}\n"
    )
    access = SshAccess(f"ssh://root@{node.address}", home, proc)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((node.address, 22), 2):
            return access
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    access.stop()
    raise AssertionError(f"the node's sshd did not listen:\n{services._tail(log)}")
