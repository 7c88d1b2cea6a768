"""Several hosts on one machine, for tests of what crosses a network: Linux network namespaces
joined by veth pairs to a bridge in the root namespace, the way servers share a LAN.

    with Network("t1") as net:
        a = net.add_host("a")            # a namespace with its own address on the bridge
        net.forward(5432)                # the shared PostgreSQL at net.service_ip:5432
        proc = net.spawn(a, [...], env, log_path)

The shared services (PostgreSQL, Redis, a fake provider) keep listening on 127.0.0.1 in the root
namespace, as they do for the rest of the suite; `forward` exposes one on the bridge's address
through socat, so nothing about the machine's services is reconfigured, and the bridge address is
the one "database host" every namespace sees. Everything made here is named with a prefix and the
test process's id, removed by `close()`, and a run that died without closing is cleaned up by the
next one (`remove_stale`)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "cxm2h"
# A /24 per network out of this range, the first one no interface of the machine uses. These are
# addresses of the test's own hosts only: nothing leaves the machine (the bridge has no uplink).
POOL = ipaddress.ip_network("10.231.0.0/16")


def unavailable_reason() -> str:
    """Why namespaces cannot be made here, or "" when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "socat"):
        if not shutil.which(tool):
            return f"`{tool}` is not installed (Debian: iproute2, socat)"
    probe = f"{PREFIX}-probe{os.getpid()}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return ""


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["ip", *(("netns", "exec", netns, "ip") if netns else ()), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {result.stderr.strip()}")
    return result


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> None:
    """Namespaces and bridges of earlier runs whose test process is gone (killed before its
    finalizers ran)."""
    names = _ip("netns", "list", check=False).stdout.split()
    links = re.findall(r"^\d+: ([^:@]+)", _ip("-o", "link", "show", check=False).stdout, re.M)
    for name in {*names, *links}:
        match = re.fullmatch(rf"{PREFIX}(\d+)[a-z]*\d*", name) or re.fullmatch(rf"{PREFIX}-\w+?(\d+)", name)
        if match and not _alive(int(match.group(1))):
            if name in names:
                _ip("netns", "del", name, check=False)
            else:
                _ip("link", "del", name, check=False)


def _free_subnet() -> ipaddress.IPv4Network:
    used = [ipaddress.ip_interface(a).network for a in
            re.findall(r"inet (\S+)", _ip("-o", "-4", "addr", "show", check=False).stdout)]
    start = os.getpid() % 250
    subnets = list(POOL.subnets(new_prefix=24))
    for i in range(len(subnets)):
        subnet = subnets[(start + i) % len(subnets)]
        if not any(subnet.overlaps(u) for u in used):
            return subnet
    raise RuntimeError(f"no free /24 left in {POOL}")


@dataclass
class Host:
    name: str  # the namespace
    ip: str
    procs: list[subprocess.Popen] = field(default_factory=list)


@dataclass
class Network:
    tag: str
    subnet: ipaddress.IPv4Network | None = None
    hosts: list[Host] = field(default_factory=list)
    forwarders: list[subprocess.Popen] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"{PREFIX}{os.getpid()}br"  # at most 15 characters, the kernel's limit

    @property
    def service_ip(self) -> str:
        """The root namespace's address on the bridge: where the namespaces find the shared
        services."""
        assert self.subnet is not None
        return str(self.subnet.network_address + 1)

    def __enter__(self) -> Network:
        remove_stale()
        self.subnet = _free_subnet()
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.service_ip}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def add_host(self, label: str) -> Host:
        assert self.subnet is not None
        n = len(self.hosts) + 1
        ns = f"{PREFIX}-{label}{os.getpid()}"
        root_end, host_end = f"{PREFIX}{os.getpid()}v{n}", "eth0"
        ip = str(self.subnet.network_address + 1 + n)
        host = Host(ns, ip)
        self.hosts.append(host)  # registered first, so close() removes what was half made
        _ip("netns", "add", ns)
        _ip("link", "add", root_end, "type", "veth", "peer", "name", host_end, "netns", ns)
        _ip("link", "set", root_end, "master", self.bridge)
        _ip("link", "set", root_end, "up")
        _ip("addr", "add", f"{ip}/24", "dev", host_end, netns=ns)
        _ip("link", "set", host_end, "up", netns=ns)
        _ip("link", "set", "lo", "up", netns=ns)
        return host

    def forward(self, port: int, target_port: int | None = None) -> None:
        """Accept connections on service_ip:port and relay each to 127.0.0.1:target_port (socat
        forks a relay per connection, so the test process spends no CPU on the traffic)."""
        proc = subprocess.Popen(
            ["socat", "-lf", "/dev/null", f"TCP4-LISTEN:{port},bind={self.service_ip},reuseaddr,fork,backlog=256",
             f"TCP4:127.0.0.1:{target_port or port}"],
            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.forwarders.append(proc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((self.service_ip, port), timeout=1):
                return
            if proc.poll() is not None:
                raise RuntimeError(f"socat could not listen on {self.service_ip}:{port}")
            time.sleep(0.05)
        raise RuntimeError(f"socat did not listen on {self.service_ip}:{port}")

    def spawn(self, host: Host, cmd: list[str], env: dict[str, str], log_path: Path, cwd: Path) -> subprocess.Popen:
        """Run `cmd` inside the host's namespace, in a process group of its own (so a kill takes
        its children too), its output in `log_path`."""
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(["ip", "netns", "exec", host.name, *cmd], cwd=cwd, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        host.procs.append(proc)
        return proc

    def kill(self, host: Host, sig: int = signal.SIGKILL) -> None:
        """Every process the host runs, as a machine losing power would (SIGKILL), or a stop."""
        for proc in host.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        for proc in host.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            with contextlib.suppress(ProcessLookupError):  # prefork children share the group
                os.killpg(proc.pid, signal.SIGKILL)
        host.procs.clear()

    def close(self) -> None:
        for host in self.hosts:
            self.kill(host, signal.SIGTERM)
        for proc in self.forwarders:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        self.forwarders.clear()
        for host in self.hosts:
            _ip("netns", "del", host.name, check=False)  # takes the host's veth end, and its peer
        self.hosts.clear()
        _ip("link", "del", self.bridge, check=False)
