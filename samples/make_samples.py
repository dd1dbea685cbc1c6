"""Make the kernel sample captures: real traffic in network namespaces, captured inside them.

    sudo python3 samples/make_samples.py [NAME...]

For each scenario NAME it writes NAME.pcap (NAME.pcapng; NAME-N.pcap for the rotated set),
NAME.ss.txt, the kernel's own view (`ss -tanH` in the namespace, taken at the end of the
capture, before the capture stops and while every peer is idle), and NAME.expected.json, the
facts that follow from the scenario's design. Needs root, iproute2, tcpdump, dumpcap, ethtool
(and /dev/net/tun for the vantage scenario, the kernel's vxlan module for the vxlan one,
nftables for syn_giveup, synack_giveup and peer_gone, tshark for keepalive_race, peer_gone
and unread_close, /dev/net/tun for keepalive_race too, and `ss -K`, the kernel's
CONFIG_INET_DIAG_DESTROY, for peer_gone). Those three also write NAME.ss-during.txt, the
kernel's view (`ss -tanp` in each namespace) taken during the incident.
Traffic stays inside namespaces made here (their loopback, or the wire between two); every
peer ends by itself.
"""

import json
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import IO

HERE = Path(__file__).resolve().parent
PEERS = str(HERE / "peers.py")


class Namespace:
    """A network namespace with its loopback up, offloads off and an MTU of 1500."""

    def __init__(self, name: str, script: str = PEERS) -> None:
        self.name = f"pcapstate-{name}"
        self.script = script
        self.procs: list[subprocess.Popen] = []
        self.capture: subprocess.Popen | None = None

    def __enter__(self) -> "Namespace":
        subprocess.run(["ip", "netns", "del", self.name], stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.sh("ip", "link", "set", "lo", "up", "mtu", "1500")
        # segments as a real NIC sends them, not 64 KB loopback super-packets
        self.sh("ethtool", "-K", "lo", "tso", "off", "gso", "off", "gro", "off",
                stdout=subprocess.DEVNULL)
        return self

    def __exit__(self, *exc: object) -> None:
        for p in [*self.procs, self.capture]:
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        subprocess.run(["ip", "netns", "del", self.name], check=False)

    def sh(self, *args: str, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("check", True)
        return subprocess.run(["ip", "netns", "exec", self.name, *args], **kw)

    def peer(self, *args: str, wait_for: str | None = None) -> subprocess.Popen:
        """Start a peer in the background; wait until it prints `wait_for`."""
        p = subprocess.Popen(["ip", "netns", "exec", self.name, sys.executable, self.script,
                              *args],
                             stdout=subprocess.PIPE, text=True)
        self.procs.append(p)
        if wait_for:
            line = p.stdout.readline()
            assert wait_for in line, f"peer {args} said {line!r}"
        return p

    def run(self, *args: str) -> None:
        """Run a peer to its end."""
        subprocess.run(["ip", "netns", "exec", self.name, sys.executable, self.script, *args],
                       check=True, timeout=900, stdout=subprocess.DEVNULL)

    def start_capture(self, path: str, snaplen: int = 262144, pcapng: bool = False,
                      rotate_seconds: int = 0, buffer_kib: int = 32768,
                      immediate: bool = True, iface: str = "lo") -> None:
        if pcapng:
            cmd = ["dumpcap", "-i", iface, "-s", str(snaplen), "-B", "32", "-w", path]
        else:
            # -Z root: tcpdump keeps the rights to open the next file of a rotation
            cmd = ["tcpdump", "-i", iface, "-n", "-Z", "root", "-U", "--immediate-mode",
                   "-B", str(buffer_kib), "-s", str(snaplen), "-w", path]
            if rotate_seconds:
                cmd[-2:-2] = ["-G", str(rotate_seconds)]
            if not immediate:  # buffered writes, for captures of millions of packets
                cmd.remove("-U")
                cmd.remove("--immediate-mode")
        self.capture = subprocess.Popen(["ip", "netns", "exec", self.name, *cmd],
                                        stderr=subprocess.PIPE, text=True)
        first = self.capture.stderr.readline()  # "listening on lo" / "Capturing on 'lo'"
        assert "listening" in first or "Capturing" in first, first
        time.sleep(0.3)

    def stop_capture(self, ss_path: Path) -> str:
        """Take the kernel's view, then stop the capture at once; check nothing dropped."""
        ss = self.sh("ss", "-tanH", capture_output=True, text=True).stdout
        self.capture.send_signal(2)
        _, err = self.capture.communicate(timeout=30)
        dropped = [int(n) for n in re.findall(r"(\d+) packets? dropped by kernel", err)]
        dropped += [int(n) for n in re.findall(r"received/dropped on interface .*: \d+/(\d+)",
                                               err)]
        assert not any(dropped), f"the capture dropped packets: {err}"
        ss_path.write_text(ss)
        return ss


def ss_states(ss: str) -> Counter:
    return Counter(line.split()[0] for line in ss.splitlines()
                   if line.strip() and not line.startswith("LISTEN"))


def write_expected(name: str, **facts) -> None:
    (HERE / f"{name}.expected.json").write_text(json.dumps(facts, indent=1) + "\n")


# ---- scenarios --------------------------------------------------------------------------

def close_wait_leak(ns: Namespace) -> None:
    ns.peer("server", "leak", "127.0.0.1", "5001", "5", "60", wait_for="listening")
    ns.start_capture(str(HERE / "close_wait_leak.pcap"))
    ns.run("client", "send_close", "127.0.0.1", "5001", "5", "0.5", "4096")
    time.sleep(14)  # the youngest leaked socket is then > 11 s in CLOSE_WAIT
    ss = ns.stop_capture(HERE / "close_wait_leak.ss.txt")
    assert ss_states(ss) == {"CLOSE-WAIT": 5, "FIN-WAIT-2": 5}, ss
    write_expected(
        "close_wait_leak",
        description="an iperf2-like server on 127.0.0.1:5001 reads each connection to EOF "
                    "and never calls close(); 5 clients send 4 KB and close, 0.5 s apart; "
                    "the server's TCP keep-alives (every 3 s) probe the stuck sockets",
        connections=5, end_kinds={"half_closed": 5}, closers={"client": 5},
        stuck=[{"state": "CLOSE_WAIT", "service": "127.0.0.1:5001", "role": "server",
                "count": 5}],
        notes="capture ends 14 s after the last close: the kernel shows 5 CLOSE-WAIT "
              "(server) and 5 FIN-WAIT-2 (client, orphaned, tcp_fin_timeout 60 s default); "
              "a pcap file ends at its last packet, so the keep-alives are what date the end")


def idle_leak(ns: Namespace) -> None:
    """The leak at full length: one connection left in CLOSE_WAIT, silent (no keep-alives),
    for 5.5 minutes, until the server's process exits."""
    server = ns.peer("server", "leak", "127.0.0.1", "5001", "1", "330", "no",
                     wait_for="listening")
    ns.start_capture(str(HERE / "idle_leak.pcap"))
    ns.run("client", "send_close", "127.0.0.1", "5001", "1", "0", "4096")
    time.sleep(320)
    before = ns.sh("ss", "-tanH", capture_output=True, text=True).stdout
    assert ss_states(before) == {"CLOSE-WAIT": 1}, before  # the client's orphan is gone
    server.wait(timeout=60)  # its exit closes the socket: a FIN, answered by a RST
    time.sleep(1)
    ss = ns.stop_capture(HERE / "idle_leak.ss.txt")
    assert ss_states(ss) == {}, ss
    write_expected(
        "idle_leak",
        description="an iperf2-like server on 127.0.0.1:5001 reads a connection to EOF and "
                    "never calls close(), without keep-alives; the client sent 4 KB and "
                    "closed; about 330 s later the server's process exits, and its kernel "
                    "sends the FIN that close() would have sent",
        connections=1, end_kinds={"reset_by_client": 1}, closers={"client": 1},
        stuck=[{"state": "CLOSE_WAIT", "service": "127.0.0.1:5001", "role": "server",
                "count": 1, "outcomes": {"last_ack": 1}}],
        zeek=[{"conn_state": "S2", "history": "ShADaF"},
              {"conn_state": "RSTR", "history": "Fr", "orig_pkts": 1, "resp_pkts": 1}],
        notes=f"ss 320 s in: {before.split()[0]} (the server); the client's orphaned "
              "FIN-WAIT-2 socket expired after tcp_fin_timeout (60 s), so the late FIN "
              "meets a RST. Zeek's inactivity timeout (5 min) ends its connection before "
              "the FIN, which starts a second one in its conn.log")


def syn_timeout(ns: Namespace) -> None:
    """A connect to an address on a link where nothing answers, until the kernel gives up."""
    with Namespace("syn-timeout-far") as far:
        ns.sh("ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        ns.sh("ip", "link", "set", "v1", "netns", far.name)
        ns.sh("sysctl", "-q", "net.ipv6.conf.v0.disable_ipv6=1")
        ns.sh("ip", "addr", "add", "10.78.0.1/24", "dev", "v0")
        ns.sh("ip", "link", "set", "v0", "up")
        far.sh("sysctl", "-q", "net.ipv6.conf.v1.disable_ipv6=1")
        far.sh("ip", "link", "set", "v1", "up")  # no address: what it receives is dropped
        mac = far.sh("cat", "/sys/class/net/v1/address", capture_output=True,
                     text=True).stdout.strip()
        ns.sh("ip", "neigh", "add", "10.78.0.2", "lladdr", mac, "dev", "v0", "nud",
              "permanent")  # no ARP: the SYNs go out
        ns.sh("sysctl", "-q", "net.ipv4.tcp_syn_retries=4")
        ns.start_capture(str(HERE / "syn_timeout.pcap"), iface="v0")
        client = ns.peer("client", "attempt", "10.78.0.2", "80")
        time.sleep(25)  # the last SYN went at 19 s; the kernel gives up at 35 s
        ss = ns.stop_capture(HERE / "syn_timeout.ss.txt")
        gave_up = client.communicate(timeout=60)[0].strip()
    assert ss_states(ss) == {"SYN-SENT": 1}, ss
    listing = subprocess.run(["tcpdump", "-tt", "-nr", str(HERE / "syn_timeout.pcap")],
                             capture_output=True, text=True, check=True).stdout
    syns = [float(line.split()[0]) for line in listing.splitlines() if "Flags [S]" in line]
    # Zeek's attempt timer: 5 s after the SYN that began a connection, it is over, and the
    # next SYN begins another
    lines: list[list[float]] = []
    for t in syns:
        if not lines or t >= lines[-1][0] + 5.0:
            lines.append([])
        lines[-1].append(t)
    write_expected(
        "syn_timeout",
        description="a client connects to 10.78.0.2:80 over a link where nothing answers "
                    "(a veth whose far end has no address), net.ipv4.tcp_syn_retries=4; the "
                    f"SYN is sent {len(syns)} times, at "
                    + ", ".join(f"{t - syns[0]:.1f}" for t in syns) + " s",
        connections=1, end_kinds={"unanswered": 1}, closers={"none": 1},
        stuck=[{"state": "SYN_SENT", "service": "10.78.0.2:80",
                "role": "client", "count": 1}],
        zeek=[{"conn_state": "S0", "history": "S", "orig_pkts": len(group), "resp_pkts": 0}
              for group in lines],
        notes=f"ss (at 25 s): SYN-SENT; the client: {gave_up}. Linux retries 1 s apart at first "
              "(net.ipv4.tcp_syn_linear_timeouts), then doubling. Zeek's attempt timer ends "
              "its connection 5 s after the SYN that began it: one conn.log line (S0) for "
              "each 5 s window of SYNs")


def close_wait_reset(ns: Namespace) -> None:
    ns.peer("server", "late", "127.0.0.1", "6000", "2", "11", "30", wait_for="listening")
    ns.start_capture(str(HERE / "close_wait_reset.pcap"))
    ns.run("client", "send_close", "127.0.0.1", "6000", "2", "0.5", "1000")
    time.sleep(13)  # the server writes 11 s after the last accept, then closes
    ss = ns.stop_capture(HERE / "close_wait_reset.ss.txt")
    assert ss_states(ss) == {}, ss
    write_expected(
        "close_wait_reset",
        description="a server on 127.0.0.1:6000 reads each of 2 connections to EOF, stays in "
                    "CLOSE_WAIT for about 11 s, then writes a late reply; the clients closed "
                    "long ago, so their kernels answer the data with a RST",
        connections=2, end_kinds={"reset_by_client": 2}, closers={"client": 2},
        stuck=[{"state": "CLOSE_WAIT", "service": "127.0.0.1:6000", "role": "server",
                "count": 2, "outcomes": {"reset_by_peer": 2}}],
        notes="the kernel shows no socket at the end: the RST closed the server's, and the "
              "client's orphaned FIN-WAIT-2 socket went with its RST")


def client_close(ns: Namespace) -> None:
    ns.peer("server", "reply", "127.0.0.1", "8080", "3", "no", "30", wait_for="listening")
    ns.start_capture(str(HERE / "client_close.pcap"))
    ns.run("client", "request", "127.0.0.1", "8080", "3", "0.2", "yes")
    time.sleep(1)
    ss = ns.stop_capture(HERE / "client_close.ss.txt")
    assert ss_states(ss) == {"TIME-WAIT": 3}, ss
    write_expected(
        "client_close", description="request/response; the client closes first, then the "
                                    "server; 3 connections",
        connections=3, end_kinds={"closed": 3}, closers={"client": 3}, stuck=[],
        notes="the client's sockets end in TIME-WAIT")


def server_close(ns: Namespace, name: str = "server_close", n: int = 3,
                 pcapng: bool = False) -> None:
    ns.peer("server", "reply", "127.0.0.1", "8080", str(n), "yes", "30", wait_for="listening")
    ns.start_capture(str(HERE / f"{name}.pcap{'ng' if pcapng else ''}"), pcapng=pcapng)
    ns.run("client", "request", "127.0.0.1", "8080", str(n), "0.2", "no")
    time.sleep(1)
    ss = ns.stop_capture(HERE / f"{name}.ss.txt")
    assert ss_states(ss) == {"TIME-WAIT": n}, ss
    write_expected(
        name, description=f"request/response; the server closes first after its reply, then "
                          f"the client; {n} connections"
                          + (", captured by dumpcap as pcapng" if pcapng else ""),
        connections=n, end_kinds={"closed": n}, closers={"server": n}, stuck=[],
        notes="the server's sockets end in TIME-WAIT")


def rst_abort(ns: Namespace) -> None:
    ns.peer("server", "sink", "127.0.0.1", "9000", "2", "30", wait_for="listening")
    ns.start_capture(str(HERE / "rst_abort.pcap"))
    ns.run("client", "abort", "127.0.0.1", "9000", "2", "0.3")
    time.sleep(1)
    ss = ns.stop_capture(HERE / "rst_abort.ss.txt")
    assert ss_states(ss) == {}, ss
    write_expected(
        "rst_abort", description="the client sends 2 KB and closes with SO_LINGER (on, 0 s): "
                                 "a RST, no FIN; 2 connections",
        # the client aborts (issue 18: the RST's sender is the active closer)
        connections=2, end_kinds={"reset_by_client": 2}, closers={"client": 2}, stuck=[],
        notes="no socket is left on either side")


def refused(ns: Namespace) -> None:
    ns.peer("server", "reply", "127.0.0.1", "8080", "1", "no", "30", wait_for="listening")
    ns.start_capture(str(HERE / "refused.pcap"))
    ns.run("client", "refused", "127.0.0.1", "9999", "2", "0.2")
    ns.run("client", "request", "127.0.0.1", "8080", "1", "0", "yes")
    time.sleep(1)
    ss = ns.stop_capture(HERE / "refused.ss.txt")
    assert ss_states(ss) == {"TIME-WAIT": 1}, ss
    write_expected(
        "refused", description="2 connects to a port with no listener (RST/ACK answers the "
                               "SYN), then 1 normal connection, closed by the client",
        connections=3, end_kinds={"refused": 2, "closed": 1}, closers={"none": 2, "client": 1},
        stuck=[], notes="")


def half_close(ns: Namespace) -> None:
    ns.peer("server", "half", "127.0.0.1", "8080", "200000", "30", wait_for="listening")
    ns.start_capture(str(HERE / "half_close.pcap"))
    ns.run("client", "half", "127.0.0.1", "8080")
    time.sleep(1)
    ss = ns.stop_capture(HERE / "half_close.ss.txt")
    assert ss_states(ss) == {"TIME-WAIT": 1}, ss
    write_expected(
        "half_close", description="the client sends a request and shutdown(SHUT_WR); the "
                                  "server sends 200 KB over 1 s after that FIN, then closes",
        connections=1, end_kinds={"closed": 1}, closers={"client": 1}, stuck=[],
        notes="data flows for 1 s while the client is in FIN-WAIT-2 and the server in "
              "CLOSE-WAIT")


def mid_stream(ns: Namespace) -> None:
    ns.peer("server", "echo", "127.0.0.1", "7000", "30", wait_for="listening")
    ns.peer("client", "chatter", "127.0.0.1", "7000", "3", wait_for="connected")
    time.sleep(0.8)  # the handshake and the first messages happen before the capture
    ns.start_capture(str(HERE / "mid_stream.pcap"))
    time.sleep(3.5)  # the client stops chatting and closes; the server closes 0.3 s later
    ss = ns.stop_capture(HERE / "mid_stream.ss.txt")
    assert ss_states(ss) == {"TIME-WAIT": 1}, ss
    write_expected(
        "mid_stream", description="a connection already exchanging a message every 100 ms "
                                  "when the capture starts (no SYN captured); the client "
                                  "closes first, the server 0.3 s later",
        connections=1, end_kinds={"closed": 1}, closers={"client": 1}, stuck=[],
        notes="roles must be inferred from the ports (7000 vs an ephemeral port)")


def ipv6(ns: Namespace) -> None:
    ns.peer("server", "reply", "::1", "8080", "2", "no", "30", wait_for="listening")
    ns.start_capture(str(HERE / "ipv6.pcap"))
    ns.run("client", "request", "::1", "8080", "2", "0.2", "yes")
    time.sleep(1)
    ss = ns.stop_capture(HERE / "ipv6.ss.txt")
    assert ss_states(ss) == {"TIME-WAIT": 2}, ss
    write_expected(
        "ipv6", description="request/response over [::1]; the client closes first; "
                            "2 connections",
        connections=2, end_kinds={"closed": 2}, closers={"client": 2}, stuck=[], notes="")


def pcapng(ns: Namespace) -> None:
    server_close(ns, "pcapng", 2, pcapng=True)


def rotated(ns: Namespace) -> None:
    tmp = HERE / "rotated-tmp"
    tmp.mkdir(exist_ok=True)
    for old in [*HERE.glob("rotated-*.pcap"), *tmp.glob("*")]:
        old.unlink()
    ns.peer("server", "sink", "127.0.0.1", "8080", "4", "30", wait_for="listening")
    ns.start_capture(str(tmp / "%s.pcap"), snaplen=96, rotate_seconds=1)
    bulk = ns.peer("client", "bulk", "127.0.0.1", "8080", "2000000", "2.5")
    ns.run("client", "request", "127.0.0.1", "8080", "3", "0.8", "yes")
    bulk.wait(timeout=60)
    time.sleep(1)
    ss = ns.stop_capture(HERE / "rotated.ss.txt")
    assert ss_states(ss) == {"TIME-WAIT": 4}, ss
    files = sorted(tmp.glob("*.pcap"), key=lambda p: int(p.stem))
    assert len(files) >= 3, files
    for i, f in enumerate(files):
        f.rename(HERE / f"rotated-{i}.pcap")
    tmp.rmdir()
    write_expected(
        "rotated", description="one 2 MB upload over 2.5 s plus 3 short request/response "
                               "connections, captured with tcpdump -G 1 (a new file every "
                               "second) and snaplen 96; the upload spans several files",
        connections=4, end_kinds={"closed": 4}, closers={"client": 4}, stuck=[],
        notes="snaplen 96 keeps the files small: payloads are cut, headers are whole")


class Wire:
    """Two namespaces, `ns` (10.77.0.1, the client side, device vc0) and a second one
    (10.77.0.2, device vs0), joined by samples/wire.py: `delay` seconds each way, every
    `drop_every`th data segment from the client lost; the wire stops after `seconds`.
    `near`, `far` and `devices` name other addresses and devices."""

    def __init__(self, ns: Namespace, name: str, delay: float, drop_every: int = 0,
                 near: str = "10.77.0.1", far: str = "10.77.0.2",
                 devices: tuple[str, str] = ("vc0", "vs0"), seconds: int = 60) -> None:
        self.ns, self.name, self.delay, self.drop = ns, name, delay, drop_every
        self.near, self.far_ip, self.devices, self.seconds = near, far, devices, seconds

    def __enter__(self) -> Namespace:
        near_dev, far_dev = self.devices
        self.wire = subprocess.Popen([sys.executable, str(HERE / "wire.py"), near_dev, far_dev,
                                      str(self.delay), str(self.seconds), str(self.drop)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.wire.stdout.readline().strip() == "ready"
        self.far = Namespace(self.name)
        far = self.far.__enter__()
        for side, dev, me, peer in ((self.ns, near_dev, self.near, self.far_ip),
                                    (far, far_dev, self.far_ip, self.near)):
            subprocess.run(["ip", "link", "set", dev, "netns", side.name], check=True)
            side.sh("sysctl", "-q", f"net.ipv6.conf.{dev}.disable_ipv6=1")
            side.sh("ip", "addr", "add", me, "peer", peer, "dev", dev)
            side.sh("ip", "link", "set", dev, "up")
        return far

    def __exit__(self, *exc: object) -> None:
        self.wire.kill()  # first: its devices go with the namespaces
        self.wire.wait()
        self.far.__exit__(*exc)


def lossy(ns: Namespace) -> None:
    """A 300 KB upload over a 20 ms path that loses every 40th data segment."""
    with Wire(ns, "lossy-server", 0.010, drop_every=40) as far:
        far.peer("server", "sink", "10.77.0.2", "8080", "1", "30", wait_for="listening")
        ns.start_capture(str(HERE / "lossy.pcap"), iface="vc0", snaplen=96)
        ns.run("client", "bulk", "10.77.0.2", "8080", "300000", "1.5")
        time.sleep(1)
        ss = far.sh("ss", "-tanH", capture_output=True, text=True).stdout
        ss += ns.stop_capture(HERE / "lossy.ss.txt")
    (HERE / "lossy.ss.txt").write_text(ss)
    assert ss_states(ss) == {"TIME-WAIT": 1}, ss
    write_expected(
        "lossy", description="one 300 KB upload paced over 1.5 s on a path with a 20 ms round "
                             "trip (samples/wire.py) that loses every 40th data segment from "
                             "the client; captured at the client, before the losses, so the "
                             "retransmissions are in the capture",
        connections=1, end_kinds={"closed": 1}, closers={"client": 1}, stuck=[],
        notes="the ss view holds both namespaces' sockets")


def vantage(ns: Namespace) -> None:
    """One set of connections over a path with a 20 ms round trip, captured at both ends."""
    delay = 0.010  # each way
    with Wire(ns, "vantage-server", delay) as far:
        far.peer("server", "reply", "10.77.0.2", "8080", "3", "no", "30",
                 wait_for="listening")
        ns.start_capture(str(HERE / "vantage_client.pcap"), iface="vc0")
        far.start_capture(str(HERE / "vantage_server.pcap"), iface="vs0")
        ns.run("client", "request", "10.77.0.2", "8080", "3", "0.2", "yes")
        time.sleep(1)
        ss = far.sh("ss", "-tanH", capture_output=True, text=True).stdout
        ss += ns.stop_capture(HERE / "vantage_client.ss.txt")
        far.stop_capture(HERE / "vantage_server.ss.txt")
    assert ss_states(ss) == {"TIME-WAIT": 3}, ss
    for name in ("vantage_client", "vantage_server"):
        (HERE / f"{name}.ss.txt").write_text(ss)  # both namespaces' sockets
        side = name.removeprefix("vantage_")
        write_expected(
            name, description="request/response between two namespaces joined by a wire "
                              f"with {delay * 1e3:g} ms of delay each way (samples/wire.py); "
                              f"the client closes first; 3 connections; captured at the "
                              f"{side}",
            connections=3, end_kinds={"closed": 3}, closers={"client": 3}, stuck=[],
            vantage=side,
            notes="the ss view holds both namespaces' sockets; the other capture of this "
                  "scenario saw the same packets at the other end of the wire")


VXLAN_UNDERLAY = ("10.79.0.1", "10.79.0.2")  # the two VTEPs, one each side of a veth
VXLAN_TENANTS = {42: 3, 43: 2}  # VNI -> leaked connections in it
VXLAN_CLIENT_PORT = 45000  # the clean connection's client port, the same in both VNIs


def _mac(ns: Namespace, dev: str) -> str:
    return ns.sh("cat", f"/sys/class/net/{dev}/address", capture_output=True,
                 text=True).stdout.strip()


def _neighbours(a: Namespace, a_dev: str, a_ip: str, b: Namespace, b_dev: str,
                b_ip: str) -> None:
    """Each side knows the other's MAC address: no ARP in the capture, only TCP."""
    a.sh("ip", "neigh", "add", b_ip, "lladdr", _mac(b, b_dev), "dev", a_dev, "nud", "permanent")
    b.sh("ip", "neigh", "add", a_ip, "lladdr", _mac(a, a_dev), "dev", b_dev, "nud", "permanent")


def _no_offloads(ns: Namespace, dev: str) -> None:
    """Real-sized segments with their checksums computed (no TSO/GSO/GRO, no checksum
    offload), and no IPv6 chatter (router solicitations, MLD) on the device."""
    ns.sh("ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off", "tx", "off",
          stdout=subprocess.DEVNULL)
    ns.sh("sysctl", "-q", f"net.ipv6.conf.{dev}.disable_ipv6=1")


def vxlan(ns: Namespace) -> None:
    """Two tenants' overlays over one underlay: VXLAN VNIs 42 and 43, each between a client
    namespace (10.9.0.1) and a server namespace (10.9.0.2): the same inner addresses in
    both VNIs. `ns` holds one end of the underlay (a veth, 10.79.0.1) and a second namespace
    the other (10.79.0.2); the VXLAN devices are made there, on the veth, and moved into the
    tenants' namespaces (their UDP sockets stay on the underlay: link-netns). In each VNI a
    server that never closes after the client's FIN (close_wait_leak's) leaks some
    connections, and one request/response connection closes cleanly; the clean ones use
    the same client port in both VNIs, so the two share their inner 4-tuple. Captured on
    the underlay veth: Ethernet / IPv4 / UDP 4789 / VXLAN / Ethernet / IPv4 / TCP, and
    nothing else (static neighbours: no ARP; no IPv6)."""
    near, far = VXLAN_UNDERLAY
    with ExitStack() as stack:
        under = stack.enter_context(Namespace("vxlan-underlay"))
        ns.sh("ip", "link", "add", "u0", "type", "veth", "peer", "name", "u1")
        ns.sh("ip", "link", "set", "u1", "netns", under.name)
        for side, dev, me in ((ns, "u0", near), (under, "u1", far)):
            _no_offloads(side, dev)
            side.sh("ip", "addr", "add", f"{me}/24", "dev", dev)
            side.sh("ip", "link", "set", dev, "up")
        _neighbours(ns, "u0", near, under, "u1", far)
        tenants = {}  # VNI -> (client namespace, server namespace)
        for vni, leaks in VXLAN_TENANTS.items():
            pair = []
            for side, dev, local, remote, role, inner in (
                    (ns, "u0", near, far, "a", "10.9.0.1"),
                    (under, "u1", far, near, "b", "10.9.0.2")):
                tenant = stack.enter_context(Namespace(f"vxlan-{role}{vni}"))
                vx = f"vx{vni}"
                side.sh("ip", "link", "add", vx, "type", "vxlan", "id", str(vni), "local", local,
                        "remote", remote, "dstport", "4789", "dev", dev)
                side.sh("ip", "link", "set", vx, "netns", tenant.name)
                _no_offloads(tenant, vx)
                tenant.sh("ip", "addr", "add", f"{inner}/24", "dev", vx)
                tenant.sh("ip", "link", "set", vx, "up")
                pair.append(tenant)
            client, server = tenants[vni] = tuple(pair)
            _neighbours(client, f"vx{vni}", "10.9.0.1", server, f"vx{vni}", "10.9.0.2")
            # the leaked connections' client ports: disjoint between the VNIs
            client.sh("sysctl", "-q", f"net.ipv4.ip_local_port_range={vni}000 {vni}999")
            server.peer("server", "leak", "10.9.0.2", "5001", str(leaks), "60",
                        wait_for="listening")
            server.peer("server", "reply", "10.9.0.2", "8080", "1", "no", "30",
                        wait_for="listening")
        ns.start_capture(str(HERE / "vxlan.pcap"), iface="u0")
        for vni, leaks in VXLAN_TENANTS.items():
            tenants[vni][0].run("client", "send_close", "10.9.0.2", "5001", str(leaks), "0.5",
                                "4096")
        for vni in VXLAN_TENANTS:  # one after the other: the second SYN meets a closed 4-tuple
            client = tenants[vni][0]
            client.sh("sysctl", "-q",
                      f"net.ipv4.ip_local_port_range={VXLAN_CLIENT_PORT} {VXLAN_CLIENT_PORT}")
            client.run("client", "request", "10.9.0.2", "8080", "1", "0", "yes")
            time.sleep(0.5)
        time.sleep(14)  # the youngest leaked socket is then > 11 s in CLOSE_WAIT
        views = {}  # (VNI, namespace) -> ss -tanH there
        for vni, pair in tenants.items():
            for tenant in pair:
                views[(vni, tenant.name)] = tenant.sh("ss", "-tanH", capture_output=True,
                                                      text=True).stdout
        ns.stop_capture(HERE / "vxlan.ss.txt")
    for vni, leaks in VXLAN_TENANTS.items():
        client, server = (views[(vni, t.name)] for t in tenants[vni])
        assert ss_states(client) == {"FIN-WAIT-2": leaks, "TIME-WAIT": 1}, client
        assert ss_states(server) == {"CLOSE-WAIT": leaks}, server
    # one file, in the form tests/test_samples.py reads (state, queues, local, peer), each
    # line saying where it was taken
    (HERE / "vxlan.ss.txt").write_text("".join(
        f"{line.rstrip()}\t# vni={vni} netns={name}\n"
        for (vni, name), view in views.items() for line in view.splitlines() if line.strip()))
    leaked = sum(VXLAN_TENANTS.values())
    n = leaked + len(VXLAN_TENANTS)
    write_expected(
        "vxlan",
        description="two tenants' overlays on one underlay (a veth, 10.79.0.1 - 10.79.0.2), "
                    "VXLAN VNIs 42 and 43, each between 10.9.0.1 (client) and 10.9.0.2 "
                    "(server) in namespaces of their own; in each VNI an iperf2-like server "
                    "on 10.9.0.2:5001 reads each connection to EOF and never calls close() "
                    f"({', '.join(f'{k} in VNI {v}' for v, k in VXLAN_TENANTS.items())}; the "
                    "clients send 4 KB and close, 0.5 s apart; keep-alives every 3 s), then "
                    "one request/response to 10.9.0.2:8080 closes cleanly, the client first, "
                    f"from client port {VXLAN_CLIENT_PORT} in both VNIs; captured on the "
                    "underlay veth at 10.79.0.1",
        connections=n, end_kinds={"half_closed": leaked, "closed": len(VXLAN_TENANTS)},
        closers={"client": n},
        # the findings name a service by its inner ip:port and its tunnel: one per VNI
        stuck=[{"state": "CLOSE_WAIT", "role": "server", "count": leaks,
                "service": f"10.9.0.2:5001 in vxlan {vni} {'-'.join(sorted(VXLAN_UNDERLAY))}"}
               for vni, leaks in VXLAN_TENANTS.items()],
        tunnels=[{"kind": "vxlan", "endpoints": sorted(VXLAN_UNDERLAY), "id": vni,
                  "parent": None} for vni in VXLAN_TENANTS],
        by_vni={str(vni): {"connections": leaks + 1, "close_wait": leaks,
                           "close_wait_service": "10.9.0.2:5001",
                           "clean": {"client": f"10.9.0.1:{VXLAN_CLIENT_PORT}",
                                     "server": "10.9.0.2:8080"},
                           "client_netns": tenants[vni][0].name,
                           "server_netns": tenants[vni][1].name}
                for vni, leaks in VXLAN_TENANTS.items()},
        notes="vxlan.ss.txt holds the four tenant namespaces' ss -tanH, each line ending with "
              "its VNI and namespace; the kernel shows, per VNI, the leaked count in "
              "CLOSE-WAIT (server) and FIN-WAIT-2 (client, orphaned) and one TIME-WAIT "
              f"(client, port {VXLAN_CLIENT_PORT}); the underlay namespaces hold no TCP")


class Veth:
    """Two namespaces joined by a veth: `ns` (`near`, device n0) and a second one (`far`,
    device f0), each with the other's MAC address as a static neighbour (no ARP), offloads
    and IPv6 off: the wire carries only what the scenario sends."""

    def __init__(self, ns: Namespace, name: str, near: str, far: str) -> None:
        self.ns, self.name, self.near, self.far_ip = ns, name, near, far

    def __enter__(self) -> Namespace:
        self.far = Namespace(self.name)
        far = self.far.__enter__()
        self.ns.sh("ip", "link", "add", "n0", "type", "veth", "peer", "name", "f0")
        self.ns.sh("ip", "link", "set", "f0", "netns", far.name)
        for side, dev, me in ((self.ns, "n0", self.near), (far, "f0", self.far_ip)):
            _no_offloads(side, dev)
            side.sh("ip", "addr", "add", f"{me}/24", "dev", dev)
            side.sh("ip", "link", "set", dev, "up")
        _neighbours(self.ns, "n0", self.near, far, "f0", self.far_ip)
        return far

    def __exit__(self, *exc: object) -> None:
        self.far.__exit__(*exc)


def _drop(ns: Namespace, match: str) -> str:
    """nftables in `ns`: drop the incoming packets that `match`; returns the ruleset."""
    rules = ("table inet pcapstate {\n"
             "  chain input {\n"
             "    type filter hook input priority 0; policy accept;\n"
             f"    {match} drop\n"
             "  }\n"
             "}\n")
    ns.sh("nft", "-f", "-", input=rules, text=True)
    return ns.sh("nft", "list", "ruleset", capture_output=True, text=True).stdout


def _sysctl(ns: Namespace, name: str) -> int:
    return int(ns.sh("sysctl", "-n", name, capture_output=True, text=True).stdout)


def _views(*namespaces: Namespace) -> str:
    """`ss -tanH` in each namespace, each line saying where it was taken (the form
    tests/test_samples.py reads: state, queues, local, peer)."""
    return "".join(f"{line.rstrip()}\t# netns={n.name}\n"
                   for n in namespaces
                   for line in n.sh("ss", "-tanH", capture_output=True,
                                    text=True).stdout.splitlines() if line.strip())


_SEGMENT = re.compile(r"(\d+\.\d+) IP (\S+) > (\S+): Flags \[([^\]]*)\]"
                      r"(?:, seq (\d+)(?::\d+)?)?(?:, ack (\d+))?")


def _segments(path: Path) -> tuple[list[dict], list[float]]:
    """The capture's TCP segments, as tcpdump reads them: time, source, destination, flags
    (tcpdump's letters: S, S., F., R, R., P., .), absolute sequence and ack numbers; and the
    times of its other records (UDP, ICMP)."""
    listing = subprocess.run(["tcpdump", "-tt", "-n", "-S", "-r", str(path)],
                             capture_output=True, text=True, check=True).stdout
    out, others = [], []
    for line in listing.splitlines():
        m = _SEGMENT.match(line)
        if not m:
            assert " UDP," in line or " ICMP " in line, line
            others.append(float(line.split()[0]))
            continue
        t, src, dst, flags, seq, ack = m.groups()
        out.append({"t": float(t), "src": src.rsplit(".", 1)[0] + ":" + src.rsplit(".", 1)[1],
                    "dst": dst.rsplit(".", 1)[0] + ":" + dst.rsplit(".", 1)[1].rstrip(":"),
                    "flags": flags, "seq": int(seq) if seq else None,
                    "ack": int(ack) if ack else None})
    return out, others


#: pcapstate's default stuck threshold (settings.py): the scenarios' expected findings are
#: the stretches the kernel's timeline shows longer than this
STUCK_AFTER = 10.0
SYN_GIVEUP = ("10.81.0.1", "10.81.0.2")  # client, server


def syn_giveup(ns: Namespace) -> None:
    """A connect to a listener whose namespace drops every incoming SYN (nftables), until
    the client's kernel gives up (net.ipv4.tcp_syn_retries=2), captured at the client for
    some seconds after that; a UDP datagram at the end dates the capture's end."""
    client_ip, server_ip = SYN_GIVEUP
    with Veth(ns, "syn-giveup-server", client_ip, server_ip) as far:
        ruleset = _drop(far, f"ip daddr {server_ip} tcp dport 80 "
                             "tcp flags & (fin | syn | rst | ack) == syn")
        far.peer("server", "listen", server_ip, "80", "60", wait_for="listening")
        ns.sh("sysctl", "-q", "net.ipv4.tcp_syn_retries=2")
        retries = _sysctl(ns, "net.ipv4.tcp_syn_retries")
        linear = _sysctl(ns, "net.ipv4.tcp_syn_linear_timeouts")
        ns.start_capture(str(HERE / "syn_giveup.pcap"), iface="n0")
        client = ns.peer("client", "attempt", server_ip, "80")
        gave_up = client.stdout.readline().strip()  # "gave up after 7.1 s: [Errno 110] ..."
        gave_up_at = time.time()
        client.wait(timeout=30)
        during = _views(ns, far)  # the client's socket is gone at once
        time.sleep(6)  # the capture goes on well after the last SYN
        ns.run("client", "datagram", server_ip, "9")  # dates the capture's end
        ss = _views(ns, far)
        ns.stop_capture(HERE / "syn_giveup.ss.txt")
    (HERE / "syn_giveup.ss.txt").write_text(ss)
    assert ss_states(ss) == {} and ss_states(during) == {}, (during, ss)
    assert "timed out" in gave_up, gave_up
    segments, others = _segments(HERE / "syn_giveup.pcap")
    assert all(s["flags"] == "S" for s in segments), segments  # nothing answered
    assert len({s["seq"] for s in segments}) == 1  # one socket, its SYN sent again
    syns = [s["t"] for s in segments]
    t0 = syns[0]
    gaps = [round(b - a, 1) for a, b in zip(syns, syns[1:], strict=False)]
    # the timer after retransmission k: 1 s while k <= tcp_syn_linear_timeouts, then doubling
    k = len(syns) - 1
    next_gap = 1.0 if k <= linear else 2.0 ** (k - linear)
    end = gave_up_at - t0
    assert abs(syns[-1] - t0 + next_gap - end) < 0.5, (syns, end)
    write_expected(
        "syn_giveup",
        description=f"a client ({client_ip}) connects to {server_ip}:80, a listener whose "
                    "namespace drops every incoming SYN (nftables, input hook); the client's "
                    f"namespace has net.ipv4.tcp_syn_retries={retries} and "
                    f"net.ipv4.tcp_syn_linear_timeouts={linear} (the default): the SYN is "
                    f"sent {len(syns)} times ({len(syns) - 1} retransmissions), at "
                    + ", ".join(f"{t - t0:.1f}" for t in syns) + " s (gaps "
                    + ", ".join(f"{g:g}" for g in gaps) + " s), then the kernel gives up "
                    f"(ETIMEDOUT) at about {syns[-1] - t0 + next_gap:.1f} s, the last SYN + "
                    f"{next_gap:g} s, and the capture goes on for 6 s more (its last records "
                    "a UDP datagram and its ICMP answer); captured at the client",
        connections=1, end_kinds={"unanswered": 1}, closers={"none": 1},
        # the client was in SYN_SENT from its first SYN to the give-up, then CLOSED by its
        # timer: stuck only if that was longer than the threshold (and not still open)
        stuck=[{"state": "SYN_SENT", "service": f"{server_ip}:80", "role": "client",
                "count": 1, "outcomes": {"closed": 1}}] if end > STUCK_AFTER else [],
        final_states=[{"client": "CLOSED", "server": "CLOSED"}],
        syns=len(syns), syn_times=[round(t - t0, 3) for t in syns],
        client_closed_by_timer_at=round(syns[-1] - t0 + next_gap, 1),
        client_error=gave_up.split(": ", 1)[1],
        client_gave_up_at=round(end, 2),
        capture_end_after_give_up=round(others[-1] - t0 - end, 1),
        last_records=f"a UDP datagram from the client to {server_ip}:9 and the ICMP port "
                     f"unreachable answering it, at {others[0] - t0:.1f} s: no TCP (a pcap "
                     "file ends at its last packet: they date the capture's end)",
        sysctls={"client": {"net.ipv4.tcp_syn_retries": retries,
                            "net.ipv4.tcp_syn_linear_timeouts": linear}},
        nftables={"server": ruleset},
        notes=f"the client: {gave_up} (its own clock; {end:.2f} s after the first SYN by the "
              "capture's clock, when it said so). This kernel retransmits 1 s apart while "
              "the retransmissions number at most tcp_syn_linear_timeouts, then doubles, and "
              "gives up when a retransmission timer fires (2^(tcp_syn_retries + 1) - 1) x 1 s "
              f"= {2 ** (retries + 1) - 1} s or more after the first SYN: {len(syns) - 1} "
              f"retransmissions here, not tcp_syn_retries + tcp_syn_linear_timeouts = "
              f"{retries + linear}. ss right "
              "after the give-up and at the end shows no socket in the client's namespace "
              "and only the LISTEN socket in the server's: the give-up closed the client's "
              "socket; the server never had one for this connection")


SYNACK_GIVEUP = ("10.82.0.1", "10.82.0.2")  # client, server


def _watch(ns: Namespace, seconds: float,
           interval: float = 0.02) -> tuple[subprocess.Popen, IO[str]]:
    """`ss -tanH` in `ns` every `interval` seconds, for at most `seconds` (a bounded loop in
    the namespace), each view after a line "@ <the time>", into a file (a pipe read only at
    the end would fill and stop the loop); read it with _polls."""
    script = (f"i=0; while [ $i -lt {int(seconds / interval)} ]; do "
              f'echo "@ $(date +%s.%N)"; ss -tanH; sleep {interval}; i=$((i + 1)); done')
    out = tempfile.TemporaryFile("w+")
    p = subprocess.Popen(["ip", "netns", "exec", ns.name, "sh", "-c", script], stdout=out,
                         text=True)
    ns.procs.append(p)
    return p, out


def _polls(watcher: tuple[subprocess.Popen, IO[str]]) -> list[tuple[float, str]]:
    """Stop a _watch loop (if it still runs) and return its (time, ss -tanH) views."""
    p, out = watcher
    if p.poll() is None:
        p.terminate()
    p.wait(timeout=30)
    out.seek(0)
    polls: list[tuple[float, str]] = []
    for line in out.read().splitlines():
        if line.startswith("@ "):
            polls.append((float(line[2:]), ""))
        elif polls:
            polls[-1] = (polls[-1][0], polls[-1][1] + line + "\n")
    out.close()
    return polls[:-1]  # the last view may be cut


def _spans(polls: list[tuple[float, str]], state: str) -> list[list[float]]:
    """From (time, ss -tanH) polls, the stretches during which a socket was in `state`:
    [first poll that saw it, first poll that did not] (None if it was there to the end)."""
    spans: list[list] = []
    for t, view in polls:
        there = bool(ss_states(view)[state])
        if there and (not spans or spans[-1][1] is not None):
            spans.append([t, None])
        elif not there and spans and spans[-1][1] is None:
            spans[-1][1] = t
    return spans


def synack_giveup(ns: Namespace) -> None:
    """A listener whose SYN-ACKs are dropped on the way (nftables in the client's
    namespace), net.ipv4.tcp_synack_retries=2: it retransmits them, then drops the request;
    the client retries its SYN and gives up too. Captured at the server, until well after
    both gave up; a UDP datagram at the end dates the capture's end."""
    client_ip, server_ip = SYNACK_GIVEUP
    with Veth(ns, "synack-giveup-server", client_ip, server_ip) as far:
        ruleset = _drop(ns, f"ip saddr {server_ip} tcp sport 80 "
                            "tcp flags & (syn | ack) == syn | ack")
        far.sh("sysctl", "-q", "net.ipv4.tcp_synack_retries=2")
        # the client retries with a plain doubling backoff (no linear start: 1 s apart, each
        # retransmitted SYN would re-arm the request's timer before it fired), long enough
        # that a SYN comes after the first request expired
        ns.sh("sysctl", "-q", "net.ipv4.tcp_syn_retries=4")
        ns.sh("sysctl", "-q", "net.ipv4.tcp_syn_linear_timeouts=0")
        sysctls = {"server": {k: _sysctl(far, k) for k in ("net.ipv4.tcp_synack_retries",)},
                   "client": {k: _sysctl(ns, k) for k in ("net.ipv4.tcp_syn_retries",
                                                          "net.ipv4.tcp_syn_linear_timeouts")}}
        far.peer("server", "listen", server_ip, "80", "90", wait_for="listening")
        far.start_capture(str(HERE / "synack_giveup.pcap"), iface="f0")
        watchers = {"client": _watch(ns, 90), "server": _watch(far, 90)}
        client = ns.peer("client", "attempt", server_ip, "80")
        gave_up = client.communicate(timeout=90)[0].strip()
        gave_up_at = time.time()
        time.sleep(1)
        polls = {role: _polls(w) for role, w in watchers.items()}
        # the capture goes on after both gave up, for longer than the client's next SYN
        # interval (16 s): past its last SYN + twice that interval
        time.sleep(20)
        ns.run("client", "datagram", server_ip, "9")  # dates the capture's end
        ss = _views(ns, far)
        far.stop_capture(HERE / "synack_giveup.ss.txt")
    (HERE / "synack_giveup.ss.txt").write_text(ss)
    assert ss_states(ss) == {}, ss
    assert "timed out" in gave_up, gave_up
    segments, others = _segments(HERE / "synack_giveup.pcap")
    t0 = segments[0]["t"]
    syns = [s for s in segments if s["flags"] == "S"]
    synacks = [s for s in segments if s["flags"] == "S."]
    assert len(syns) + len(synacks) == len(segments), segments  # nothing else on the wire
    assert len({s["seq"] for s in syns}) == 1  # one client socket
    isns: dict[int, list[float]] = {}  # the server's initial sequence numbers, in order
    answers: Counter = Counter()  # SYN-ACKs right after a client SYN: answers to it
    for prev, s in zip([None, *segments], segments, strict=False):
        if s["flags"] == "S.":
            assert s["ack"] == syns[0]["seq"] + 1
            isns.setdefault(s["seq"], []).append(round(s["t"] - t0, 3))
            answers[s["seq"]] += prev is not None and prev["flags"] == "S" \
                and s["t"] - prev["t"] < 0.005
    for role in polls:  # the kernel's view, polled about every 0.03 s, on the capture's clock
        polls[role] = [(t - t0, view) for t, view in polls[role]]
    pending = _spans(polls["server"], "SYN-RECV")
    trying = _spans(polls["client"], "SYN-SENT")
    for span in (*pending, *trying):
        span[:] = [round(t, 2) if t is not None else None for t in span]
    syn_times = [round(s["t"] - t0, 3) for s in syns]
    starts = [times[0] for times in isns.values()]
    assert pending and pending[-1][1] is not None, pending  # the last request expired

    def expired(i: int) -> float:
        """When request i expired: when ss stopped showing the SYN-RECV socket it began,
        or, if the next request's SYN-ACK came first, then (the new ISN says the request
        before it had expired, in the same timer tick)."""
        shown = next(b for a, b in pending if a <= starts[i] + 0.05 and b > starts[i])
        return min(shown, starts[i + 1]) if i + 1 < len(starts) else shown
    requests = [{"server_isn": isn, "synack_times": times,
                 # SYN-ACKs right after a client SYN (within 5 ms) answer it; the others
                 # are the request's own timer's
                 "answering_a_syn": answers[isn], "by_timer": len(times) - answers[isn],
                 "expired_at": expired(i)}
                for i, (isn, times) in enumerate(isns.items())]
    client_end = trying[-1][1] if trying and trying[-1][1] is not None else gave_up_at - t0
    # found stuck: the stretches longer than the 10 s threshold, each ended by a timer
    long_requests = sum(1 for r in requests
                        if r["expired_at"] - r["synack_times"][0] > STUCK_AFTER)
    stuck = [{"state": "SYN_SENT", "service": f"{server_ip}:80", "role": "client",
              "count": 1, "outcomes": {"closed": 1}}] if client_end > STUCK_AFTER else []
    if long_requests:
        stuck.append({"state": "SYN_RCVD", "service": f"{server_ip}:80", "role": "server",
                      "count": long_requests, "outcomes": {"closed": long_requests}})
    write_expected(
        "synack_giveup",
        description=f"a client ({client_ip}) connects to a listener on {server_ip}:80 whose "
                    "SYN-ACKs are dropped on the way (nftables in the client's namespace, "
                    "input hook); the server's namespace has net.ipv4.tcp_synack_retries="
                    f"{sysctls['server']['net.ipv4.tcp_synack_retries']}, the client's "
                    "net.ipv4.tcp_syn_retries=4 and net.ipv4.tcp_syn_linear_timeouts=0; the "
                    f"client's SYN is sent {len(syns)} times, at "
                    + ", ".join(f"{s['t'] - t0:.1f}" for s in syns) + " s; the server "
                    f"answers with {len(synacks)} SYN-ACKs in {len(requests)} requests "
                    "(initial sequence numbers), at "
                    + "; ".join(", ".join(f"{t:.1f}" for t in r["synack_times"])
                                for r in requests) + " s; the client gives up at "
                    f"{client_end:.1f} s and the capture goes on for "
                    f"{others[0] - t0 - client_end:.0f} s more (its last records a UDP "
                    "datagram and its ICMP answer); captured at the server",
        connections=1, end_kinds={"handshake_incomplete": 1}, closers={"none": 1},
        stuck=stuck,
        final_states=[{"client": "CLOSED", "server": "CLOSED"}],
        syns=len(syns), syn_times=syn_times,
        synacks=len(synacks), requests=requests,
        new_isn_after_expiry=len(requests) > 1,
        server_syn_recv_seen=pending, client_syn_sent_seen=trying,
        client_error=gave_up.split(": ", 1)[1],
        client_gave_up_at=round(client_end, 2),
        sysctls=sysctls, nftables={"client": ruleset},
        last_records=f"a UDP datagram from the client to {server_ip}:9 and the ICMP port "
                     f"unreachable answering it, at {others[0] - t0:.1f} s: no TCP (a pcap "
                     "file ends at its last packet: they date the capture's end)",
        notes=f"the client: {gave_up}. server_syn_recv_seen and client_syn_sent_seen: when "
              "ss -tanH, polled about every 0.03 s in each namespace during the attempt, "
              "first showed a SYN-RECV (server) or SYN-SENT (client) socket and first no "
              "longer did, in seconds from the first SYN (the capture's clock). A "
              "retransmitted SYN that meets a pending request is answered at once with a "
              "SYN-ACK (the same initial sequence number) and re-arms the request's timer, "
              "so both sides' timers run from the same instants: a request expires in the "
              "same timer tick as the client's next SYN, which then makes a new request, "
              "with a new initial sequence number (ss never shows the gap: the new "
              "request's SYN-RECV socket follows at once). requests[].expired_at: when ss "
              "stopped showing the request's SYN-RECV socket, or the next request's first "
              "SYN-ACK if that came first (the expiry came just before it). ss at the end: "
              "no socket in either namespace but the LISTEN one")


LATE_LEAK = ("10.83.0.1", "10.83.0.2")  # clients, server
LATE_LEAK_N = 6


def late_leak(ns: Namespace) -> None:
    """The capture that starts after the damage: a server that leaks CLOSE_WAIT (the
    close_wait_leak server, without keep-alives) took 6 connections whose clients sent 4 KB
    and closed; the clients' orphaned FIN_WAIT_2 sockets expired (net.ipv4.tcp_fin_timeout=1
    in their namespace). Only then does tcpdump start, at the server, and the server's
    process exits: its kernel sends a FIN on each CLOSE_WAIT socket, and the clients' kernel,
    with no socket for them, answers each with a RST."""
    client_ip, server_ip = LATE_LEAK
    n, hold_s, leak_s = LATE_LEAK_N, 16.0, 12.0
    with Veth(ns, "late-leak-server", client_ip, server_ip) as far:
        ns.sh("sysctl", "-q", "net.ipv4.tcp_fin_timeout=1")
        server = far.peer("server", "leak", server_ip, "5001", str(n), str(hold_s), "no",
                          wait_for="listening")
        ns.run("client", "send_close", server_ip, "5001", str(n), "0.3", "4096")
        last_close = time.monotonic() - 0.3  # the last client closed, then slept 0.3 s
        for _ in range(100):  # the clients' orphans expire after about 1 s
            if not ss_states(ns.sh("ss", "-tanH", capture_output=True, text=True).stdout):
                break
            time.sleep(0.1)
        gone = time.monotonic() - last_close
        time.sleep(max(0.0, last_close + leak_s - time.monotonic()))
        far.start_capture(str(HERE / "late_leak.pcap"), iface="f0")
        captured_from = time.monotonic() - 0.3 - last_close  # start_capture waits 0.3 s
        ns.run("client", "datagram", server_ip, "9")  # dates the capture's start
        time.sleep(1)
        before = _views(ns, far)  # the server exits hold_s after the last client's close
        server.wait(timeout=30)
        exited = time.monotonic() - last_close
        time.sleep(1)
        ss = _views(ns, far)
        far.stop_capture(HERE / "late_leak.ss.txt")
    (HERE / "late_leak.ss.txt").write_text(ss)
    server_before = "".join(ln + "\n" for ln in before.splitlines() if far.name in ln)
    client_before = "".join(ln + "\n" for ln in before.splitlines() if ns.name in ln)
    assert ss_states(server_before) == {"CLOSE-WAIT": n}, before
    assert ss_states(client_before) == {}, before
    assert ss_states(ss) == {}, ss
    segments, others = _segments(HERE / "late_leak.pcap")
    assert len(others) == 2 and others[-1] < segments[0]["t"], others
    service = f"{server_ip}:5001"
    fins = [s for s in segments if "F" in s["flags"]]
    rsts = [s for s in segments if "R" in s["flags"]]
    assert len(segments) == 2 * n and len(fins) == n and len(rsts) == n, segments
    assert all(s["src"] == service for s in fins)
    assert {s["src"] for s in rsts} == {s["dst"] for s in fins}  # each FIN met a RST
    assert all(r["seq"] == f["ack"] for f in fins for r in rsts if r["src"] == f["dst"])
    t0 = others[0]
    write_expected(
        "late_leak",
        description=f"an iperf2-like server on {service} reads each connection to EOF and "
                    f"never calls close(), without keep-alives; {n} clients ({client_ip}, in a "
                    "namespace of their own with net.ipv4.tcp_fin_timeout=1) sent 4 KB and "
                    "closed, 0.3 s apart, and their orphaned FIN_WAIT_2 sockets expired; "
                    f"{leak_s:g} s after the last client's close tcpdump starts, at the "
                    f"server, and {hold_s:g} s after it the server's process exits: its kernel "
                    f"sends a FIN on each of its {n} CLOSE_WAIT sockets, and the clients' "
                    "kernel, with no socket for them, answers each with a RST. The capture "
                    "holds no SYN, no data and no client FIN: the clients closed first, "
                    "before it began. Its first records, a UDP datagram from the clients' "
                    "side to port 9 and the ICMP port unreachable answering it, date its "
                    f"start, {segments[0]['t'] - t0:.1f} s before the first FIN",
        connections=n, end_kinds={"reset_by_client": n},
        # the true active closer, known from the scenario (the clients closed first, before
        # the capture): a verdict can only infer it, from the RST answers
        closers={"client": n},
        stuck=[{"state": "CLOSE_WAIT", "service": service, "role": "server", "count": n,
                "outcomes": {"last_ack": n}, "inferred": True}],
        final_states=[{"client": "CLOSED", "server": "CLOSED"}] * n,
        # seconds from the capture's first record
        per_connection=[{"client": f["dst"], "server_fin_at": round(f["t"] - t0, 6),
                         "client_rst_at": round(next(r["t"] for r in rsts
                                                     if r["src"] == f["dst"]) - t0, 6)}
                        for f in fins],
        closer_evidence="inferred: each server FIN is answered by a RST from the client's "
                        "kernel (no socket: the client closed, or vanished, first); the "
                        "client's FIN is before the capture",
        ss_before_exit=before.splitlines(),
        close_wait_before_capture_s=[round(captured_from + 0.3 * k, 1)
                                     for k in range(n - 1, -1, -1)],
        notes=f"ss 1 s into the capture, before the server's exit (ss_before_exit): {n} "
              "CLOSE-WAIT sockets on the server, none on the client side (its orphans had "
              f"expired {gone:.1f} s after the last close); ss at the end: no socket in "
              "either namespace (the exit closed the listener too). The server's sockets "
              "had been in CLOSE_WAIT for about "
              f"{captured_from:.0f} to {captured_from + 0.3 * (n - 1):.0f} s when the "
              f"capture began (tcpdump started; {exited - captured_from:.1f} s before the "
              f"exit), and {segments[0]['t'] - t0:.1f} s more from its first record to "
              "the FINs; close_wait_before_capture_s gives each, oldest first, from the "
              "clients' 0.3 s spacing")


ABORT_PLANS = ("client_linger", "server_linger", "client_unread", "server_unread") * 2
ABORT_FIRST_PORT = 41001  # the client ports: one a connection, in the plans' order
ABORT_HOW = {"linger": "RST from close() with SO_LINGER (on, 0 s)",
             "unread": "RST from close() with unread data in the receive buffer"}


def aborts(ns: Namespace) -> None:
    """Aborts from both sides, over loopback: in each connection the plan its client sends
    first says which side aborts and how (peers.py server_aborts, client_aborts): close()
    with SO_LINGER (on, 0 s), or close() with unread data in the receive buffer; each sends
    a RST and no FIN."""
    n = len(ABORT_PLANS)
    ns.peer("server", "aborts", "127.0.0.1", "9100", str(n), "30", wait_for="listening")
    ns.start_capture(str(HERE / "aborts.pcap"))
    ns.run("client", "aborts", "127.0.0.1", "9100", ",".join(ABORT_PLANS),
           str(ABORT_FIRST_PORT), "0.3")
    time.sleep(1)
    ss = ns.stop_capture(HERE / "aborts.ss.txt")
    assert ss_states(ss) == {}, ss
    segments, others = _segments(HERE / "aborts.pcap")
    assert not others, others
    assert not any("F" in s["flags"] for s in segments), segments
    per = []
    for i, plan in enumerate(ABORT_PLANS):
        client = f"127.0.0.1:{ABORT_FIRST_PORT + i}"
        side, how = plan.split("_")
        rsts = [s for s in segments if "R" in s["flags"] and client in (s["src"], s["dst"])]
        assert len(rsts) == 1, rsts  # the abort's RST, and no other
        first_rst = rsts[0]
        assert (first_rst["src"] == client) == (side == "client"), (plan, first_rst)
        per.append({"client": client, "server": "127.0.0.1:9100", "aborted_by": side,
                    "how": ABORT_HOW[how], "rst_flags": first_rst["flags"]})
    by_side = Counter(p["aborted_by"] for p in per)
    write_expected(
        "aborts",
        description=f"{n} connections to 127.0.0.1:9100 over loopback, one after another "
                    f"0.3 s apart, from client ports {ABORT_FIRST_PORT} to "
                    f"{ABORT_FIRST_PORT + n - 1}; in each, one side aborts: the client with "
                    "SO_LINGER (on, 0 s) after sending 2 KB; the server with SO_LINGER (on, "
                    "0 s) after reading the request; the client by closing with the server's "
                    "1.2 KB reply unread; the server by closing with 2 KB of the client's "
                    "unread; twice each, in that order. Every abort is a RST, no FIN; the "
                    "other side's socket is reset",
        connections=n,
        end_kinds={f"reset_by_{side}": k for side, k in sorted(by_side.items())},
        # the side whose RST ended the connection closed it first (issue 18)
        closers=dict(sorted(by_side.items())),
        stuck=[],
        final_states=[{"client": "CLOSED", "server": "CLOSED"}] * n,
        per_connection=per,
        notes="no socket is left on either side (ss at the end shows only the listener); "
              "per_connection, in the order of the connections (client ports), says who "
              "aborted first and how: Linux sends a RST from close() when SO_LINGER is on "
              "with a 0 s timeout, or when data the application never read is in the "
              "receive buffer (RFC 2525, 2.17)")


# ---- incidents: each with the kernel's view taken during it (NAME.ss-during.txt) ----------

def _ss_during(*namespaces: Namespace) -> str:
    """`ss -tanp` in each namespace, one after the other, raw, each block after a line
    "# netns=NAME"; the first line says when the first was taken (epoch seconds, the
    capture's clock) and where."""
    text = f"# taken at {time.time():.6f} ({namespaces[0].name})\n"
    for n in namespaces:
        text += f"# netns={n.name}\n" + n.sh("ss", "-tanp", capture_output=True,
                                             text=True).stdout
    return text


def _nft(ns: Namespace, table: str, chains: str) -> str:
    """Add nftables table `table` (family inet) with `chains` in `ns`; returns its listing."""
    ns.sh("nft", "-f", "-", input=f"table inet {table} {{\n{chains}\n}}\n", text=True)
    return ns.sh("nft", "list", "table", "inet", table, capture_output=True, text=True).stdout


def _log(text: str) -> list[dict]:
    """A peer's log (peers.py log(): one JSON object a line)."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


_FIELDS = ("frame.time_epoch", "ip.src", "tcp.srcport", "ip.dst", "tcp.dstport", "tcp.flags",
           "tcp.len", "tcp.seq_raw", "tcp.ack_raw")


def _packets(path: Path) -> list[dict]:
    """The capture's TCP segments as tshark reads them: t (epoch), src, dst ("ip:port"),
    flags (a set of F S R P A), len (payload bytes), seq, ack (absolute)."""
    out = subprocess.run(["tshark", "-n", "-r", str(path), "-Y", "tcp", "-T", "fields",
                          *(x for f in _FIELDS for x in ("-e", f))],
                         capture_output=True, text=True, check=True).stdout
    packets = []
    for line in out.splitlines():
        t, sip, sport, dip, dport, flags, length, seq, ack = line.split("\t")
        bits = int(flags, 16)
        packets.append({"t": float(t), "src": f"{sip}:{sport}", "dst": f"{dip}:{dport}",
                        "flags": {c for c, b in zip("FSRPA", (1, 2, 4, 8, 16), strict=True)
                                  if bits & b},
                        "len": int(length), "seq": int(seq), "ack": int(ack or 0)})
    return packets


def _tshark_count(path: Path, display_filter: str) -> int:
    out = subprocess.run(["tshark", "-n", "-r", str(path), "-Y", display_filter],
                         capture_output=True, text=True, check=True).stdout
    return len(out.splitlines())


def _tshark_conversations(path: Path) -> int:
    out = subprocess.run(["tshark", "-n", "-q", "-z", "conv,tcp", "-r", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return sum("<->" in line for line in out.splitlines())


def _write_during(name: str, text: str) -> None:
    (HERE / f"{name}.ss-during.txt").write_text(text)


def _kib(path: Path) -> str:
    return f"{path.stat().st_size / 1024:.0f} KiB"


KEEPALIVE_RACE = ("10.84.0.1", "10.84.0.2")  # client, server
KEEPALIVE_IDLE = 2.0  # the server's keep-alive idle timeout
KEEPALIVE_DELAY = 0.05  # one way, on the wire
KEEPALIVE_CLIENT = {"lanes": 3, "per_lane": 10, "seed": 39, "idle_lo": 1.5, "idle_mode": 2.0,
                    "idle_hi": 2.5, "stagger": 0.35}


def keepalive_race(ns: Namespace) -> None:
    """The keep-alive race: an HTTP-like server closes a connection idle for 2.0 s; a client
    with a pool of 3 kept connections reuses each after an idle time drawn around 2 s. Over
    a wire with 50 ms each way, a request sent between 2.0 - 0.1 and 2.0 s of idle leaves
    before the server's FIN arrives and reaches a socket already closed: the server's
    kernel answers it with a RST. The client checks a kept connection before reusing it (a
    FIN already there: a new connection), so only the true races fail. Captured at the
    server."""
    client_ip, server_ip = KEEPALIVE_RACE
    name, plan = "keepalive_race", KEEPALIVE_CLIENT
    pcap = HERE / f"{name}.pcap"
    with Wire(ns, "keepalive-race-server", KEEPALIVE_DELAY, near=client_ip, far=server_ip,
              devices=("kc0", "ks0")) as far:
        server = far.peer("server", "keepalive", server_ip, "80", str(KEEPALIVE_IDLE), "32",
                          wait_for="listening")
        far.start_capture(str(pcap), iface="ks0")
        client = ns.peer("client", "keepalive", server_ip, "80",
                         *(str(plan[k]) for k in ("lanes", "per_lane", "seed", "idle_lo",
                                                  "idle_mode", "idle_hi", "stagger")))
        events, snaps = [], []
        for line in client.stdout:  # a view of both kernels at each race, as it is noticed
            e = json.loads(line)
            events.append(e)
            if e["event"] == "request" and e["reused"] and e["outcome"] != "response":
                snaps.append((e, _ss_during(far, ns)))
        client.wait(timeout=60)
        time.sleep(1)
        ss = _views(ns, far)
        far.stop_capture(HERE / f"{name}.ss.txt")
        server_log = _log(server.communicate(timeout=60)[0])
    (HERE / f"{name}.ss.txt").write_text(ss)
    requests = [e for e in events if e["event"] == "request"]
    races = [e for e in requests if e["reused"] and e["outcome"] != "response"]
    assert all(e["outcome"] == "response" for e in requests if not e["reused"]), requests
    assert len(races) >= 2, requests
    new_conns = [e for e in requests if not e["reused"]]  # each opened a connection
    ports = [e["port"] for e in new_conns]
    assert len(set(ports)) == len(ports), ports  # one connection a port
    stale = [e for e in events if e["event"] == "stale"]
    closes = [e for e in events if e["event"] == "close"]
    idle_closes = {e["peer_port"]: e for e in server_log if e["event"] == "idle_close"}
    race_ports = [e["port"] for e in races]
    assert sorted(race_ports + [e["port"] for e in stale] + [e["port"] for e in closes]) \
        == sorted(ports), (races, stale, closes)
    # every race and every stale connection: the server had closed it for idleness, before
    # the request was sent + the one-way delay (it reached a closed socket)
    for e in [*races, *stale]:
        assert e["port"] in idle_closes, (e, idle_closes)
    for e in races:
        assert idle_closes[e["port"]]["t"] < e["sent"] + KEEPALIVE_DELAY + 0.005, e
    rst_instead_of_fin = sorted(p for p, e in idle_closes.items() if e["unread"])
    # the capture: each race's request after the server's FIN (or its RST), then a RST
    packets = _packets(pcap)
    service = f"{server_ip}:80"
    per_race = []
    for e in races:
        client = f"{client_ip}:{e['port']}"
        conn = [p for p in packets if client in (p["src"], p["dst"])]
        fin = next((p for p in conn if p["src"] == service and "F" in p["flags"]), None)
        req = [p for p in conn if p["src"] == client and p["len"]][-1]
        rsts = [p for p in conn if p["src"] == service and "R" in p["flags"]]
        assert rsts and rsts[0]["t"] > req["t"], (e, conn)
        assert fin is None or fin["t"] < req["t"], (e, conn)
        per_race.append({"client": client, "idle_s": e["idle"], "outcome": e["outcome"],
                         "request_sent": e["sent"],
                         "server_idle_close": idle_closes[e["port"]]["t"],
                         "server_fin_at": fin["t"] if fin else None,
                         "request_at_server": req["t"], "first_rst_at": rsts[0]["t"],
                         "rsts_from_server": len(rsts)})
    # the kernel's view at the end: the races' sockets are gone on both sides; a stale
    # connection's server socket (it closed first) and a finished one's client socket are
    # in TIME-WAIT
    view = Counter()
    for line in ss.splitlines():
        f = line.split()
        if f[0] != "LISTEN":
            local_port = int(f[3].rsplit(":", 1)[1])
            peer_port = int(f[4].rsplit(":", 1)[1])
            view[(f[0], "client" if local_port != 80 else "server",
                  local_port if local_port != 80 else peer_port)] += 1
    assert not [k for k in view if k[2] in race_ports], view
    assert ss_states(ss) == {"TIME-WAIT": len(stale) + len(closes)}, ss
    assert all(view[("TIME-WAIT", "server", e["port"])] for e in stale), view
    assert all(view[("TIME-WAIT", "client", e["port"])] for e in closes), view
    final = {**{p: {"client": "CLOSED", "server": "CLOSED"} for p in race_ports},
             **{e["port"]: {"client": "CLOSED", "server": "TIME_WAIT"} for e in stale},
             **{e["port"]: {"client": "TIME_WAIT", "server": "CLOSED"} for e in closes}}
    # the view during the incident: the first race whose server socket was still there
    # (FIN-WAIT, the request on its way), else the first race's
    def shows_server_socket(e: dict, text: str) -> bool:
        block = text.split("# netns=")[1]
        return any(f":{e['port']}" in ln and "FIN-WAIT" in ln for ln in block.splitlines())
    race, during = next(((e, t) for e, t in snaps if shows_server_socket(e, t)), snaps[0])
    _write_during(name, during)
    seen_during = []  # (namespace, state, Send-Q) of the race's sockets in that view
    for block in during.split("# netns=")[1:]:
        where = block.split("\n", 1)[0]
        seen_during += [f"{'server' if where == far.name else 'client'} {ln.split()[0]} "
                        f"(Send-Q {ln.split()[2]})"
                        for ln in block.splitlines()[2:] if f":{race['port']} " in ln]
    rst_count = _tshark_count(pcap, "tcp.flags.reset==1")
    rst_server = _tshark_count(pcap, f"tcp.flags.reset==1 && ip.src=={server_ip}")
    retrans = _tshark_count(pcap, "tcp.analysis.retransmission")
    convs = _tshark_conversations(pcap)
    assert convs == len(ports), convs
    assert sorted(int(p["src"].rsplit(":", 1)[1]) for p in packets if p["flags"] == {"S"}) \
        == sorted(ports)  # one SYN a connection: none sent again
    idles = [e["idle"] for e in races]
    # how far the drawn idle times lie from the race window's edges: the count does not
    # hang on timing jitter
    lo_edge = KEEPALIVE_IDLE - 2 * KEEPALIVE_DELAY
    margin = min(min(abs(e["target"] - lo_edge), abs(e["target"] - KEEPALIVE_IDLE))
                 for e in requests if e["reused"])
    assert margin > 0.005 and all(lo_edge < i < KEEPALIVE_IDLE for i in idles), margin
    outcomes = Counter(e["outcome"] for e in races)
    n = len(ports)
    write_expected(
        name,
        description=f"an HTTP/1.1-like server on {service} closes (close()) a keep-alive "
                    f"connection idle for {KEEPALIVE_IDLE:g} s; a client ({client_ip}) keeps "
                    f"a pool of {plan['lanes']} connections (a thread each, started "
                    f"{plan['stagger']:g} s apart), {plan['per_lane']} requests each, and "
                    "reuses a kept connection after an idle time drawn from "
                    f"random.triangular({plan['idle_lo']:g}, {plan['idle_hi']:g}, "
                    f"{plan['idle_mode']:g}) (random.Random({plan['seed']} + lane)); the two "
                    f"namespaces are joined by samples/wire.py, {KEEPALIVE_DELAY * 1e3:g} ms "
                    "each way, so a request sent at an idle time between "
                    f"{KEEPALIVE_IDLE - 2 * KEEPALIVE_DELAY:g} and {KEEPALIVE_IDLE:g} s "
                    "leaves before the server's FIN arrives and reaches a socket closed "
                    "meanwhile: the server's kernel answers it with a RST. Before reusing a "
                    "connection the client checks it (a FIN already received: a new "
                    "connection instead), and it sends a failed request once more on a new "
                    f"connection. {len(requests)} requests on {n} connections: "
                    f"{len(races)} races ({', '.join(f'{k} {v}' for k, v in outcomes.items())} "
                    f"at the client), {len(stale)} kept connections found closed by the "
                    "server before reuse, the rest answered; captured at the server",
        connections=n,
        end_kinds=dict(sorted(Counter(
            ["reset_by_server"] * len(races) + ["closed"] * (len(stale) + len(closes))
        ).items())),
        # the server's idle timeout closed first in the races and the stale connections;
        # the client closed its last kept connections
        closers=dict(sorted(Counter(["server"] * (len(races) + len(stale))
                                    + ["client"] * len(closes)).items())),
        stuck=[],
        # in the order of the connections' SYNs in the capture
        final_states=[final[int(p["src"].rsplit(":", 1)[1])] for p in packets
                      if p["flags"] == {"S"}],
        diagnoses=[{"name": "keepalive_race", "service": service, "count": len(races),
                    "server_idle_timeout_s": KEEPALIVE_IDLE,
                    "client_reuse_idle_s": [min(idles), max(idles)]}],
        races=per_race,
        client_log=requests, client_stale=stale,
        server_idle_closes=sorted(idle_closes.values(), key=lambda e: e["t"]),
        server_rst_instead_of_fin=rst_instead_of_fin,
        tshark={"rst": rst_count, "rst_from_server": rst_server, "retransmissions": retrans,
                "tcp_conversations": convs},
        notes=f"the client's log (client_log: every request; client_stale: the kept "
              "connections it found closed before reuse) and the server's "
              "(server_idle_closes) are peers.py's, times in epoch seconds (the capture's "
              "clock); idle_s is the time from the response to the request on the client. "
              f"Each race: the server's idle close (its FIN, or a RST where a request was "
              "already unread: server_rst_instead_of_fin), then the request at the server, "
              "then the server's RST, checked in the capture (races[]: the FIN, the request "
              "and the first RST as tshark dates them at the server). The count is the "
              "requests on a reused connection that got EOF or a reset after the server's "
              "close; each was sent again on a new connection and answered. The seed's "
              "idle times (client_log target) all lie at least "
              f"{margin * 1e3:.0f} ms from the race window's edges ({lo_edge:g} and "
              f"{KEEPALIVE_IDLE:g} s), so the count does not hang on timing jitter. "
              "tshark -r "
              f"{name}.pcap: -Y tcp.flags.reset==1 {rst_count} packets ({rst_server} from "
              "the server: in each race the first answers the request, its sequence number "
              "the FIN's (the request did not acknowledge the FIN; Linux accepts a RST at "
              "rcv_nxt - 1 in CLOSE-WAIT or LAST-ACK, tcp_reset_check), and the server's "
              "kernel, with no socket left, answers the client's FIN (which acknowledges the "
              "server's) with a second where it came after (races[].rsts_from_server), at "
              "the FIN's sequence number + 1); -Y "
              f"tcp.analysis.retransmission {retrans}; -q -z conv,tcp {convs} "
              f"conversations = {n} connections. {name}.ss-during.txt: ss -tanp in the "
              f"server's namespace, then the client's, taken when the client noticed the "
              f"race on port {race['port']} (idle {race['idle']:.3f} s, "
              f"{race['outcome']}): its sockets " + ", ".join(seen_during) + " (the "
              "server's orphaned by its close(), its FIN unacknowledged; the client's with "
              "its request unacknowledged). ss -tanH at the end "
              f"({name}.ss.txt): "
              f"{len(stale)} TIME-WAIT at the server (the stale connections, closed first "
              f"by it), {len(closes)} at the client (its last kept connections), no socket "
              f"of a race. Capture {_kib(pcap)}")


PEER_GONE = ("10.85.0.1", "10.85.0.2", "10.85.0.3")  # clients; server A (vanishes); B (cut)
PEER_GONE_IDLE_CLIENTS = 3
PEER_GONE_RETRIES2 = 3


def peer_gone(ns: Namespace) -> None:
    """Peers that go away without a word, captured at the clients. (a) A server (A) with 3
    idle keep-alive connections vanishes: nftables drops its outgoing packets, `ss -K`
    destroys its sockets (their RSTs dropped) and its process is killed; the drop is
    removed; then each client writes a request, and the server's kernel, with no socket,
    answers with a RST. (b) Another server (B) receiving an upload has its path cut
    (nftables in its namespace drops everything to and from it) while the client sends;
    the client's kernel (net.ipv4.tcp_retries2=3) retransmits with backoff, then gives up:
    the next send fails with ETIMEDOUT."""
    client_ip, a_ip, b_ip = PEER_GONE
    name = "peer_gone"
    pcap = HERE / f"{name}.pcap"
    a_service, b_service = f"{a_ip}:8080", f"{b_ip}:9000"
    with Veth(ns, "peer-gone-server", client_ip, a_ip) as far:
        far.sh("ip", "addr", "add", f"{b_ip}/24", "dev", "f0")
        ns.sh("ip", "neigh", "add", b_ip, "lladdr", _mac(far, "f0"), "dev", "n0", "nud",
              "permanent")
        ns.sh("sysctl", "-q", f"net.ipv4.tcp_retries2={PEER_GONE_RETRIES2}")
        sysctls = {"client": {k: _sysctl(ns, k) for k in ("net.ipv4.tcp_retries2",
                                                          "net.ipv4.tcp_retries1")}}
        server_a = far.peer("server", "keepopen", a_ip, "8080", str(PEER_GONE_IDLE_CLIENTS),
                            "60", wait_for="listening")
        server_b = far.peer("server", "upload", b_ip, "9000", "25", wait_for="listening")
        ns.start_capture(str(pcap), iface="n0")
        upload = ns.peer("client", "upload", b_ip, "9000", "1000", "0.1", "200")
        up_log = [json.loads(upload.stdout.readline())]  # connected
        idle = ns.peer("client", "idle_write", a_ip, "8080", str(PEER_GONE_IDLE_CLIENTS),
                       "4", "0.3")
        idle_log = []
        while not idle_log or idle_log[-1]["event"] != "idle":
            idle_log.append(json.loads(idle.stdout.readline()))
        time.sleep(0.5)
        # (a) A vanishes: its packets out dropped, its sockets destroyed, its process killed
        steps = {"a_drop_out": time.time()}
        nft_a = _nft(far, "gone", "  chain output {\n"
                                  "    type filter hook output priority 0; policy accept;\n"
                                  f"    ip saddr {a_ip} tcp sport 8080 drop\n  }}")
        killed = far.sh("ss", "-K", "-tnH", "state", "established", "( sport = :8080 )",
                        capture_output=True, text=True).stdout
        steps["a_sockets_destroyed"] = time.time()
        server_a.kill()
        server_a.wait()
        steps["a_process_killed"] = time.time()
        left = far.sh("ss", "-tanH", "( sport = :8080 )", capture_output=True,
                      text=True).stdout
        far.sh("nft", "delete", "table", "inet", "gone")
        steps["a_drop_removed"] = time.time()
        time.sleep(0.5)
        # (b) B's path cut both ways, while its client sends
        steps["b_cut"] = time.time()
        nft_b = _nft(far, "cut", "  chain input {\n"
                                 "    type filter hook input priority 0; policy accept;\n"
                                 f"    ip daddr {b_ip} drop\n  }}\n"
                                 "  chain output {\n"
                                 "    type filter hook output priority 0; policy accept;\n"
                                 f"    ip saddr {b_ip} drop\n  }}")
        time.sleep(1.2)
        during = _ss_during(ns, far)
        idle_log += _log(idle.communicate(timeout=60)[0])
        up_log += _log(upload.communicate(timeout=60)[0])
        time.sleep(1)
        ns.run("client", "datagram", a_ip, "9")  # dates the capture's end (B's is cut)
        ss = _views(ns, far)
        ns.stop_capture(HERE / f"{name}.ss.txt")
        server_b.kill()  # its socket is still open (the cut); nothing it sends gets out
        server_b.wait()
        a_log = _log(server_a.stdout.read())
    (HERE / f"{name}.ss.txt").write_text(ss)
    _write_during(name, during)
    assert len(killed.splitlines()) == PEER_GONE_IDLE_CLIENTS, killed
    assert not left.strip(), left  # nothing of A left, not even its listener
    writes = [e for e in idle_log if e["event"] == "write"]
    assert len(writes) == PEER_GONE_IDLE_CLIENTS and all(
        e["recv"] == "ECONNRESET" for e in writes), idle_log
    failed = [e for e in up_log if e["event"] == "send_failed"]
    assert len(failed) == 1 and failed[0]["error"] == "ETIMEDOUT", up_log
    # the capture: A's clients
    packets = _packets(pcap)
    a_clients = [f"{client_ip}:{e['port']}" for e in idle_log if e["event"] == "reply"]
    per_a = []
    for client, w in zip(a_clients, writes, strict=True):
        conn = [p for p in packets if {p["src"], p["dst"]} == {client, a_service}]
        from_server = [p for p in conn if p["src"] == a_service]
        rsts = [p for p in from_server if "R" in p["flags"]]
        assert len(rsts) == 1 and rsts[0] is from_server[-1], conn
        heard = from_server[-2]  # the last before the RST: the reply to the first request
        assert heard["len"] and heard["t"] < steps["a_drop_out"], conn
        assert not [p for p in from_server if steps["a_drop_out"] <= p["t"] < rsts[0]["t"]]
        request = [p for p in conn if p["src"] == client and p["len"]][-1]
        assert request["t"] < rsts[0]["t"] and rsts[0]["seq"] == request["ack"], conn
        assert not [p for p in conn if "F" in p["flags"]], conn  # no FIN either way
        per_a.append({"client": client, "last_heard": heard["t"],
                      "request_at": request["t"], "rst_at": rsts[0]["t"],
                      "send": w["send"], "recv": w["recv"]})
    # B's client
    b_client = f"{client_ip}:{up_log[0]['port']}"
    conn = [p for p in packets if {p["src"], p["dst"]} == {b_client, b_service}]
    from_b = [p for p in conn if p["src"] == b_service]
    b_heard = from_b[-1]["t"]
    assert b_heard < steps["b_cut"] + 0.01, (b_heard, steps)
    assert not [p for p in conn if p["flags"] & {"F", "R"}], conn  # no FIN, no RST
    after_cut = [p for p in conn if p["t"] > b_heard]
    sent_after = [p for p in after_cut if p["src"] == b_client and p["len"]]
    # retransmissions: a segment whose sequence number was sent before
    seen, retrans = set(), []
    for p in conn:
        if p["src"] == b_client and p["len"]:
            if p["seq"] in seen:
                retrans.append(p)
            seen.add(p["seq"])
    gaps = [round(b["t"] - a["t"], 3) for a, b in zip(retrans, retrans[1:], strict=False)]
    gave_up = failed[0]["t"]
    b_last = conn[-1]["t"]
    rst_count = _tshark_count(pcap, "tcp.flags.reset==1")
    rst_a = _tshark_count(pcap, f"tcp.flags.reset==1 && ip.src=={a_ip}")
    t_retrans = _tshark_count(pcap, "tcp.analysis.retransmission")
    t_retrans_b = _tshark_count(pcap, f"tcp.analysis.retransmission && ip.dst=={b_ip}")
    convs = _tshark_conversations(pcap)
    assert convs == PEER_GONE_IDLE_CLIENTS + 1 and rst_count == rst_a == len(writes)
    # the kernel at the end: no client socket; B's server socket still ESTAB (its peer gave
    # up silently, and it never heard)
    client_end = ss_states("".join(ln + "\n" for ln in ss.splitlines() if ns.name in ln))
    server_end = [ln for ln in ss.splitlines() if far.name in ln and not
                  ln.startswith("LISTEN")]
    assert client_end == {}, ss
    assert len(server_end) == 1 and server_end[0].split()[0] == "ESTAB" \
        and server_end[0].split()[4] == b_client, ss
    during_client = {ln.split()[3]: ln.split() for ln in
                     during.split("# netns=")[1].splitlines()[2:]}
    during_server = [ln.split() for ln in during.split("# netns=")[2].splitlines()[2:]]
    assert all(during_client[c][0] == "ESTAB" for c in a_clients), during
    assert during_client[b_client][0] == "ESTAB" and int(during_client[b_client][2]) > 0
    assert not [f for f in during_server if f[3].startswith(f"{a_ip}:")], during
    assert [f[0] for f in during_server if f[3] == b_service and f[4] == b_client] \
        == ["ESTAB"], during
    _, others = _segments(pcap)
    assert len(others) == 2 and others[0] > gave_up, others  # the datagram and its ICMP
    syns = [p for p in packets if p["flags"] == {"S"}]
    assert [p["src"] for p in syns] == [b_client, *a_clients], syns  # one SYN each
    first_syn = syns[0]["t"]
    rel = lambda t: round(t - first_syn, 3)  # noqa: E731
    write_expected(
        name,
        description=f"captured at the clients ({client_ip}); two servers in one namespace "
                    "go away without a word. (a) A server on "
                    f"{a_service} holds {PEER_GONE_IDLE_CLIENTS} idle keep-alive connections "
                    "(one request and reply each); then nftables in its namespace drops its "
                    "outgoing packets, ss -K destroys its sockets (their RSTs dropped), its "
                    "process is killed (kill -9) and the drop removed: nothing of the "
                    "server is left and it sent nothing; 4 s after their replies the "
                    "clients each write a request (0.3 s apart), and the server's kernel, "
                    "with no socket, answers each with a RST: send() returned the bytes, "
                    f"recv() ECONNRESET. (b) A client uploads to {b_service}, 1000 bytes "
                    "every 0.1 s; mid-transfer nftables in the server's namespace drops "
                    "everything to and from "
                    f"{b_ip}; the client's namespace has net.ipv4.tcp_retries2="
                    f"{PEER_GONE_RETRIES2}: its kernel retransmits {len(retrans)} times, then "
                    f"gives up; the next send() fails with ETIMEDOUT "
                    f"{gave_up - steps['b_cut']:.1f} s after the cut; no FIN or RST; the "
                    "server's socket stays ESTAB",
        connections=PEER_GONE_IDLE_CLIENTS + 1,
        end_kinds={"open": 1, "reset_by_server": PEER_GONE_IDLE_CLIENTS},
        # (a): the server went first (its sockets destroyed), and its host's RST is the
        # only close the capture shows; (b): nobody sent a FIN or a RST
        closers={"none": 1, "server": PEER_GONE_IDLE_CLIENTS},
        stuck=[],
        # the upload connected first; the kernel's states at the capture's end (ss)
        final_states=[{"client": "CLOSED", "server": "ESTABLISHED"}]
        + [{"client": "CLOSED", "server": "CLOSED"}] * PEER_GONE_IDLE_CLIENTS,
        diagnoses=[{"name": "peer_gone", "service": a_service, "side": "server",
                    "count": PEER_GONE_IDLE_CLIENTS, "how": "rst",
                    "last_heard": max(a["last_heard"] for a in per_a)},
                   {"name": "peer_gone", "service": b_service, "side": "server",
                    "count": 1, "how": "timeout", "last_heard": b_heard}],
        vanished={"steps": steps, "destroyed_by_ss_K": killed.split("\n")[:-1],
                  "per_connection": per_a, "nftables": nft_a},
        cut={"client": b_client, "at": steps["b_cut"], "last_heard": b_heard,
             "segments_after": len(after_cut), "data_segments_after": len(sent_after),
             "retransmissions": len(retrans),
             "retransmission_times_s": [rel(p["t"]) for p in retrans],
             "retransmission_gaps_s": gaps, "client_gave_up": failed[0],
             "last_segment_at": b_last, "nftables": nft_b},
        last_records=f"a UDP datagram from the client to {a_ip}:9 and the ICMP port "
                     f"unreachable answering it, at {others[0]:.6f}, "
                     f"{others[0] - gave_up:.1f} s after B's client gave up: no TCP (a pcap "
                     "file ends at its last packet: they date the capture's end)",
        client_logs={"idle_write": idle_log, "upload": up_log},
        server_logs={"a": a_log},
        sysctls=sysctls,
        tshark={"rst": rst_count, "rst_from_a": rst_a, "retransmissions": t_retrans,
                "retransmissions_to_b": t_retrans_b, "tcp_conversations": convs},
        notes="times are epoch seconds (the capture's clock). last_heard: the capture's "
              "time of the server's last segment before it went away: for A the replies "
              "to the first requests (vanished.per_connection, each before steps."
              "a_drop_out; the diagnosis gives the latest), for B its last ACK before the "
              "cut (cut.at); nothing from either after but A's host's RSTs. "
              f"cut.retransmission_times_s are from the first SYN; the client's kernel "
              f"gave up silently (no RST sent), send() raised ETIMEDOUT at "
              f"{gave_up:.3f} (client_gave_up), its last retransmission at {b_last:.3f}. "
              f"tshark -r {name}.pcap: -Y tcp.flags.reset==1 {rst_count} packets, all from "
              f"{a_ip}; -Y tcp.analysis.retransmission {t_retrans} ({t_retrans_b} to "
              f"{b_ip}); -q -z conv,tcp {convs} conversations. {name}.ss-during.txt: ss "
              "-tanp in the clients' namespace, then the servers', 1.2 s after the cut: "
              "A's clients ESTAB with no server socket left (not even its listener); B's "
              f"client ESTAB with {during_client[b_client][2]} bytes unacknowledged "
              "(Send-Q) and B's server ESTAB. B's end kind and closer (open, none) are what "
              "the capture holds for it: no FIN and no RST either way (the client's kernel "
              "gave up without sending one; B's were dropped); A's connections each end "
              "with the RST of a host with no socket, the server side having gone first. "
              "ss -tanH at the end "
              f"({name}.ss.txt): no client socket; B's server socket still ESTAB (the "
              "capture cannot see that: the client's final state CLOSED is the kernel's, "
              "after its give-up, which sends nothing). Capture " + _kib(pcap))


UNREAD_CLOSE = ("10.86.0.1", "10.86.0.2")  # client, server
UNREAD_SIZES = (1500, 4000, 9000, 20000)  # the bodies the server leaves unread
UNREAD_HEADER = 64  # peers.py HEADER_LEN: what the server reads of each request


def unread_close(ns: Namespace) -> None:
    """A server that reads only the header of each upload (64 bytes), refuses it and
    close()s with the body unread in its receive buffer: Linux sends a RST instead of a FIN
    and discards the body (RFC 2525, 2.17); 4 uploads. Then the negative control: a client
    that reads its whole answer and aborts with SO_LINGER (on, 0 s): a RST with nothing
    unread on either side. Captured at the server."""
    client_ip, server_ip = UNREAD_CLOSE
    name, service = "unread_close", f"{server_ip}:8080"
    pcap = HERE / f"{name}.pcap"
    n = len(UNREAD_SIZES)
    with Veth(ns, "unread-close-server", client_ip, server_ip) as far:
        server = far.peer("server", "unread", server_ip, "8080", str(n + 1), "0.3", "3",
                          wait_for="listening")
        far.start_capture(str(pcap), iface="f0")
        client = ns.peer("client", "unread", server_ip, "8080",
                         ",".join(map(str, UNREAD_SIZES)), "0.3")
        server_log, during = [], None
        for line in server.stdout:  # the view of both kernels while the largest body waits
            e = json.loads(line)
            server_log.append(e)
            if e["event"] == "unread" and e["unread"] == max(UNREAD_SIZES):
                during = _ss_during(far, ns)
            if e["event"] == "control":
                break
        client_log = _log(client.communicate(timeout=60)[0])
        time.sleep(1)
        ss = _views(ns, far)
        far.stop_capture(HERE / f"{name}.ss.txt")
        server.wait(timeout=30)
    (HERE / f"{name}.ss.txt").write_text(ss)
    _write_during(name, during)
    assert ss_states(ss) == {}, ss
    uploads = [e for e in client_log if e["event"] == "upload"]
    control = next(e for e in client_log if e["event"] == "control")
    closed = {e["peer_port"]: e for e in server_log if e["event"] == "closed_unread"}
    s_control = next(e for e in server_log if e["event"] == "control")
    assert len(uploads) == n and len(closed) == n, (client_log, server_log)
    per = []
    packets = _packets(pcap)
    for size, up in zip(UNREAD_SIZES, uploads, strict=True):
        sv = closed[up["port"]]
        lost = up["sent"] - sv["read"]
        assert sv["read"] == UNREAD_HEADER and sv["unread"] == lost == size, (up, sv)
        client = f"{client_ip}:{up['port']}"
        conn = [p for p in packets if client in (p["src"], p["dst"])]
        rsts = [p for p in conn if "R" in p["flags"]]
        assert len(rsts) == 1 and rsts[0]["src"] == service, conn
        assert not [p for p in conn if "F" in p["flags"]], conn  # a RST, no FIN
        # every byte of the request reached the server and was acknowledged before it
        acked = max(p["ack"] for p in conn if p["src"] == service and "A" in p["flags"]
                    and "R" not in p["flags"])
        first = next(p for p in conn if p["src"] == client and p["len"])
        assert acked - first["seq"] == up["sent"], (acked, first, up)
        per.append({"client": client, "sent": up["sent"], "read_by_server": sv["read"],
                    "unread_lost": lost, "acknowledged_before_rst": acked - first["seq"],
                    "server_rst_at": rsts[0]["t"],
                    "client_received": up["received"], "client_outcome": up["outcome"]})
    c_client = f"{client_ip}:{control['port']}"
    conn = [p for p in packets if c_client in (p["src"], p["dst"])]
    rsts = [p for p in conn if "R" in p["flags"]]
    assert len(rsts) == 1 and rsts[0]["src"] == c_client and control["unread"] == 0 \
        and s_control["unread"] == 0 and s_control["read"] == UNREAD_HEADER, conn
    assert not [p for p in conn if "F" in p["flags"]], conn
    lost = sum(p["unread_lost"] for p in per)
    rst_count = _tshark_count(pcap, "tcp.flags.reset==1")
    rst_server = _tshark_count(pcap, f"tcp.flags.reset==1 && ip.src=={server_ip}")
    retrans = _tshark_count(pcap, "tcp.analysis.retransmission")
    convs = _tshark_conversations(pcap)
    assert convs == n + 1 and rst_count == n + 1 and rst_server == n, (convs, rst_count)
    write_expected(
        name,
        description=f"a server on {service} reads only the {UNREAD_HEADER}-byte header of "
                    f"each upload, waits until the whole body is in its receive buffer, "
                    "sends a 413 refusal and close()s with the body unread: Linux sends a "
                    "RST instead of a FIN and discards the body (RFC 2525, 2.17); "
                    f"{n} uploads from {client_ip}, bodies of "
                    + ", ".join(map(str, UNREAD_SIZES)) + " bytes, one after another 0.3 s "
                    "apart. Then the negative control: a request without a body, whose "
                    "answer the client reads whole before it closes with SO_LINGER (on, "
                    "0 s): a RST from the client, nothing unread on either side. Captured "
                    "at the server",
        connections=n + 1,
        end_kinds={"reset_by_client": 1, "reset_by_server": n},
        closers={"client": 1, "server": n},
        stuck=[],
        final_states=[{"client": "CLOSED", "server": "CLOSED"}] * (n + 1),
        diagnoses=[{"name": "reset_with_data_loss", "service": service, "side": "server",
                    "count": n, "bytes_lost": lost}],
        not_diagnosed=[{"name": "reset_with_data_loss", "client": c_client,
                        "why": "an ordinary abort: the client's close() with SO_LINGER (on, "
                               "0 s) after it had read the whole answer; the server had "
                               "read the whole request"}],
        per_connection=per,
        control={"client": c_client, "sent": control["sent"],
                 "read_by_server": s_control["read"], "client_received": control["received"],
                 "client_unread": control["unread"], "server_unread": s_control["unread"],
                 "server_saw": s_control["outcome"], "client_rst_at": rsts[0]["t"]},
        client_log=client_log, server_log=server_log,
        tshark={"rst": rst_count, "rst_from_server": rst_server, "retransmissions": retrans,
                "tcp_conversations": convs},
        notes="bytes lost per connection: the bytes the client sent (its log) minus those "
              "the server read (its log: the header), equal to what FIONREAD showed in the "
              "server's receive buffer just before close() (server_log closed_unread) and "
              "checked in the capture: the server had acknowledged every byte of the "
              "request before its RST, and sent no FIN. What the client's recv() "
              "returned (per_connection client_received, client_outcome): "
              + "; ".join(f"{k} x{v}" for k, v in Counter(
                  f"{p['client_received']} bytes (the 413 refusal), then "
                  f"{p['client_outcome']}" for p in per).items())
              + ". tshark -r "
              f"{name}.pcap: -Y tcp.flags.reset==1 {rst_count} packets ({rst_server} from "
              f"the server, 1 from the control's client); -Y tcp.analysis.retransmission "
              f"{retrans}; -q -z conv,tcp {convs} conversations. {name}.ss-during.txt: ss "
              "-tanp in the server's namespace, then the client's, while the "
              f"{max(UNREAD_SIZES)}-byte body waited unread (the server's Recv-Q) 0.3 s "
              "before the close. ss -tanH at the end: no socket but the listener. Capture "
              + _kib(pcap))


SCENARIOS = {f.__name__: f for f in (close_wait_leak, idle_leak, syn_timeout, close_wait_reset,
                                     client_close, server_close, rst_abort,
                                     refused, half_close, mid_stream, ipv6, pcapng, rotated,
                                     vantage, lossy, vxlan, syn_giveup, synack_giveup,
                                     late_leak, aborts, keepalive_race, peer_gone,
                                     unread_close)}


def main(names: list[str]) -> None:
    for name in names or SCENARIOS:
        print(f"{name} ...", flush=True)
        with Namespace(name) as ns:
            SCENARIOS[name](ns)


if __name__ == "__main__":
    main(sys.argv[1:])
