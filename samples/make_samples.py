"""Make the kernel sample captures: real traffic in network namespaces, captured inside them.

    sudo python3 samples/make_samples.py [NAME...]

For each scenario NAME it writes NAME.pcap (NAME.pcapng; NAME-N.pcap for the rotated set),
NAME.ss.txt, the kernel's own view (`ss -tanH` in the namespace, taken at the end of the
capture, before the capture stops and while every peer is idle), and NAME.expected.json, the
facts that follow from the scenario's design. Needs root, iproute2, tcpdump, dumpcap, ethtool
(and /dev/net/tun for the vantage scenario, the kernel's vxlan module for the vxlan one,
nftables for syn_giveup, synack_giveup, peer_gone and syn_retransmitted (that one deletes
set elements from a rule: made with nft 1.0.6 on Linux 6.18), tshark for keepalive_race,
peer_gone, unread_close and the causes below, /dev/net/tun for keepalive_race and
accept_queue_overflow too, and `ss -K`, the kernel's CONFIG_INET_DIAG_DESTROY, for
peer_gone; the causes, syn_retransmitted, accept_queue_overflow, zero_window_stall,
time_wait_pressure (a bridge in a namespace) and refused_burst, read the kernel's counters
with nstat, iproute2's). Those three and the causes also write NAME.ss-during.txt, the
kernel's view (`ss -tanp` in each namespace) taken during the incident.
Traffic stays inside namespaces made here (their loopback, or the wire between two); every
peer ends by itself.
"""

import json
import re
import subprocess
import sys
import tempfile
import threading
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


# ---- causes: each created on purpose, with the kernel's counters (nstat) around it ---------

def _nstat(ns: Namespace) -> dict[str, int]:
    """The kernel's SNMP counters in `ns` (`nstat -asz`: absolute values, history left
    alone)."""
    out = ns.sh("nstat", "-asz", capture_output=True, text=True).stdout
    return {f[0]: int(f[1]) for f in (line.split() for line in out.splitlines())
            if len(f) >= 2 and not f[0].startswith("#") and f[1].isdigit()}


def _nstat_delta(before: dict[str, int], after: dict[str, int],
                 keys: tuple[str, ...]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in keys}


def _drain(p: subprocess.Popen) -> tuple[list[str], threading.Thread]:
    """Read a peer's stdout as it comes, in a thread (a pipe read only at the end would
    fill and stop a peer that logs much); join the thread, then _log("".join(lines))."""
    lines: list[str] = []
    t = threading.Thread(target=lambda: lines.extend(p.stdout), daemon=True)
    t.start()
    return lines, t


def _logged(drained: tuple[list[str], threading.Thread], p: subprocess.Popen,
            timeout: float = 60) -> list[dict]:
    p.wait(timeout=timeout)
    drained[1].join(timeout=timeout)
    return _log("".join(drained[0]))


SYN_RETRANSMITTED = ("10.88.0.1", "10.88.0.2")  # client, server
#: each connection's fate, in order, one client port each from SYN_RETRANSMITTED_PORT:
#: clean, its first SYN dropped (at the server), its first SYN-ACK dropped (at the client)
SYN_RETRANSMITTED_PLAN = ("clean", "syn", "clean", "synack", "syn", "clean", "syn", "synack",
                          "clean", "syn")
SYN_RETRANSMITTED_PORT = 42001
SYN_RETRANSMITTED_NSTAT = ("TcpActiveOpens", "TcpPassiveOpens", "TcpRetransSegs",
                           "TcpExtTCPSynRetrans", "TcpExtTCPTimeouts", "TcpExtListenOverflows",
                           "TcpExtListenDrops")


def syn_retransmitted(ns: Namespace) -> None:
    """Handshakes delayed by a lost SYN or SYN-ACK: 10 connections from known client ports,
    one after another; nftables drops the first SYN of 4 of them (in the server's namespace,
    input hook: the port leaves the set as its SYN is dropped) and the first SYN-ACK of 2
    (in the client's namespace, input hook, after tcpdump saw it); the client's kernel
    retransmits its SYN 1 s later and the handshake completes. Captured at the client."""
    client_ip, server_ip = SYN_RETRANSMITTED
    name, service = "syn_retransmitted", f"{server_ip}:80"
    pcap = HERE / f"{name}.pcap"
    plan = {SYN_RETRANSMITTED_PORT + i: fate for i, fate in enumerate(SYN_RETRANSMITTED_PLAN)}
    of = {fate: [p for p, f in plan.items() if f == fate] for fate in ("clean", "syn", "synack")}
    with Veth(ns, "syn-retransmitted-server", client_ip, server_ip) as far:
        _nft(far, "firstsyn",
             "  set ports { type inet_service; flags dynamic; elements = { "
             + ", ".join(map(str, of["syn"])) + " } }\n"
             "  chain input {\n"
             "    type filter hook input priority 0; policy accept;\n"
             f"    ip daddr {server_ip} tcp dport 80 "
             "tcp flags & (fin | syn | rst | ack) == syn tcp sport @ports "
             "delete @ports { tcp sport } counter drop\n  }")
        _nft(ns, "firstsynack",
             "  set ports { type inet_service; flags dynamic; elements = { "
             + ", ".join(map(str, of["synack"])) + " } }\n"
             "  chain input {\n"
             "    type filter hook input priority 0; policy accept;\n"
             f"    ip saddr {server_ip} tcp sport 80 "
             "tcp flags & (fin | syn | rst | ack) == syn | ack tcp dport @ports "
             "delete @ports { tcp dport } counter drop\n  }")
        server = far.peer("server", "serve", server_ip, "80", "40", wait_for="listening")
        server_out = _drain(server)
        before = {"client": _nstat(ns), "server": _nstat(far)}
        ns.start_capture(str(pcap), iface="n0")
        client = ns.peer("client", "ports", server_ip, "80", ",".join(map(str, plan)), "0.3")
        client_log, during = [], None
        watch = of["synack"][0] - 1  # the view during the first lost SYN-ACK's wait
        for line in client.stdout:
            e = json.loads(line)
            client_log.append(e)
            if e["port"] == watch:
                time.sleep(0.3 + 0.5)  # the next connect's SYN went 0.5 s ago
                during = _ss_during(ns, far)
        client.wait(timeout=30)
        time.sleep(1)
        after = {"client": _nstat(ns), "server": _nstat(far)}
        counters = {"server": far.sh("nft", "list", "table", "inet", "firstsyn",
                                     capture_output=True, text=True).stdout,
                    "client": ns.sh("nft", "list", "table", "inet", "firstsynack",
                                    capture_output=True, text=True).stdout}
        ss = _views(ns, far)
        ns.stop_capture(HERE / f"{name}.ss.txt")
        server.kill()
        server_log = _logged(server_out, server)
    (HERE / f"{name}.ss.txt").write_text(ss)
    _write_during(name, during)
    dropped = {role: [int(x) for x in re.findall(r"counter packets (\d+)", text)]
               for role, text in counters.items()}
    assert dropped == {"server": [len(of["syn"])], "client": [len(of["synack"])]}, counters
    assert ss_states(ss) == {"TIME-WAIT": len(plan)}, ss
    packets = _packets(pcap)
    per = []
    for e in client_log:
        client = f"{client_ip}:{e['port']}"
        conn = [p for p in packets if client in (p["src"], p["dst"])]
        syns = [p for p in conn if p["flags"] == {"S"}]
        synacks = [p for p in conn if p["flags"] == {"S", "A"}]
        handshake_ack = next(p for p in conn if p["src"] == client and p["flags"] == {"A"})
        assert len({p["seq"] for p in syns}) == 1 and len({p["seq"] for p in synacks}) == 1
        fate = plan[e["port"]]
        per.append({"client": client, "fate": fate, "syns": len(syns),
                    "syn_times": [p["t"] for p in syns],
                    "synacks": len(synacks), "synack_times": [p["t"] for p in synacks],
                    "handshake_ack_at": handshake_ack["t"],
                    "handshake_s": round(handshake_ack["t"] - syns[0]["t"], 6),
                    "connect_s": e["connect_s"]})
    delayed = [c for c in per if c["fate"] != "clean"]
    clean = [c for c in per if c["fate"] == "clean"]
    assert all(c["syns"] == 1 and c["synacks"] == 1 for c in clean), clean
    assert all(c["syns"] == 2 and c["synacks"] == 1 for c in per if c["fate"] == "syn"), per
    # the SYN-ACK the client dropped, then the one answering its SYN sent again (and the
    # server's own timer's, when it fired in the same tick)
    assert all(c["syns"] == 2 and c["synacks"] >= 2 for c in per if c["fate"] == "synack")
    base = sorted(c["handshake_s"] for c in clean)[len(clean) // 2]
    added = [round(c["handshake_s"] - base, 3) for c in delayed]
    assert all(0.9 < a < 1.2 for a in added) and all(c["handshake_s"] < 0.01 for c in clean)
    nstat = {role: _nstat_delta(before[role], after[role], SYN_RETRANSMITTED_NSTAT)
             for role in before}
    assert nstat["client"]["TcpExtTCPSynRetrans"] == len(delayed), nstat
    accepted = [e for e in server_log if e["event"] == "accepted"]
    assert len(accepted) == len(plan), server_log
    syn_count = _tshark_count(pcap, "tcp.flags.syn==1 && tcp.flags.ack==0")
    synack_count = _tshark_count(pcap, "tcp.flags.syn==1 && tcp.flags.ack==1")
    syn_retrans = _tshark_count(pcap, "tcp.analysis.retransmission && tcp.flags.syn==1 "
                                      "&& tcp.flags.ack==0")
    synack_retrans = _tshark_count(pcap, "tcp.analysis.retransmission && tcp.flags.syn==1 "
                                         "&& tcp.flags.ack==1")
    retrans = _tshark_count(pcap, "tcp.analysis.retransmission")
    dup_acks = _tshark_count(pcap, "tcp.analysis.duplicate_ack")
    convs = _tshark_conversations(pcap)
    assert dup_acks == sum(c["synacks"] - 2 for c in per if c["fate"] == "synack"), dup_acks
    assert convs == len(plan) and syn_count == len(plan) + len(delayed) \
        and syn_retrans == len(delayed), (convs, syn_count, syn_retrans)
    client_during = during.split("# netns=")[1]
    server_during = during.split("# netns=")[2]
    watched = f"{client_ip}:{watch + 1}"
    assert re.search(rf"SYN-SENT .*{watched} ", client_during), during
    assert re.search(rf"SYN-RECV .*{watched}", server_during), during
    write_expected(
        name,
        description=f"a client ({client_ip}) makes {len(plan)} connections to {service}, one "
                    "after another 0.3 s apart, each from a client port of its own ("
                    f"{min(plan)} to {max(plan)}): a request line, a reply, the client "
                    "closes first. nftables drops the first SYN of the connections from "
                    "ports " + ", ".join(map(str, of["syn"])) + " (in the server's "
                    "namespace, input hook: a set of those ports, each removed by the rule "
                    "as it drops that port's SYN), and the first SYN-ACK to ports "
                    + ", ".join(map(str, of["synack"])) + " (in the client's namespace, "
                    "input hook, likewise: tcpdump sees it arrive, TCP never does); the "
                    "client's kernel sends the SYN again 1 s later and the handshake "
                    f"completes: {len(delayed)} connections delayed by about 1 s, "
                    f"{len(clean)} not. Captured at the client",
        connections=len(plan), end_kinds={"closed": len(plan)},
        closers={"client": len(plan)}, stuck=[],
        final_states=[{"client": "TIME_WAIT", "server": "CLOSED"}] * len(plan),
        diagnoses=[{"name": "syn_retransmitted", "service": service, "side": "client",
                    "count": len(delayed), "added_latency_s": [min(added), max(added)],
                    "syn_dropped": len(of["syn"]), "synack_dropped": len(of["synack"])}],
        per_connection=per,
        handshake_s_undelayed_median=base,
        nftables={"server": counters["server"], "client": counters["client"]},
        nft_dropped={"server_syns": dropped["server"][0],
                     "client_synacks": dropped["client"][0]},
        nstat=nstat, client_log=client_log, server_log=server_log,
        tshark={"syn": syn_count, "synack": synack_count, "syn_retransmissions": syn_retrans,
                "synack_retransmissions": synack_retrans, "retransmissions": retrans,
                "duplicate_acks": dup_acks, "tcp_conversations": convs},
        notes="per_connection: each connection in order, its fate (clean; syn: its first "
              "SYN dropped at the server; synack: its first SYN-ACK dropped at the client), "
              "the SYNs and SYN-ACKs of it in the capture (epoch seconds), its handshake "
              "time (first SYN to the client's ACK of the SYN-ACK, as captured at the "
              "client) and the client's connect() time (its log). added_latency_s: the "
              "delayed connections' handshake times minus the undelayed ones' median "
              f"({base * 1e3:.3f} ms), min and max. Every delayed connection has exactly "
              "one retransmitted SYN, 1.01-1.03 s after the first (TCP_TIMEOUT_INIT, "
              "timer granularity). A lost SYN-ACK: the server's request (SYN-RECV) waits; "
              "its own retransmission timer (1 s) fires in the same tick as the client's "
              "SYN timer, so the capture shows the dropped SYN-ACK, the client's SYN again, "
              "and "
              + ", ".join(str(c["synacks"] - 1) for c in per if c["fate"] == "synack")
              + " SYN-ACKs after it (one answering the retransmitted SYN, one from the "
              "server's own timer, in either order; the client acknowledges the first and "
              "answers the second with a duplicate ACK: tcp.analysis.duplicate_ack "
              f"{dup_acks}). The SYN-ACK is "
              "dropped at the client, not on the server's output, so that the capture "
              "shows it: dropped before tcpdump, a lost SYN-ACK would look exactly like a "
              f"lost SYN. nft counters: {dropped['server'][0]} SYNs dropped at the server, "
              f"{dropped['client'][0]} SYN-ACKs at the client. nstat deltas (nstat): the "
              f"client's TcpExtTCPSynRetrans {nstat['client']['TcpExtTCPSynRetrans']}, the "
              f"server's {nstat['server']['TcpExtTCPSynRetrans']} (SYN-ACKs sent again) with "
              f"TcpExtTCPTimeouts {nstat['server']['TcpExtTCPTimeouts']} (its request "
              f"timers). tshark -r {name}.pcap: -Y 'tcp.flags.syn==1 && tcp.flags.ack==0' "
              f"{syn_count} packets, {syn_retrans} of them tcp.analysis.retransmission; "
              f"SYN-ACKs {synack_count}, {synack_retrans} retransmissions; -q -z conv,tcp "
              f"{convs} conversations. {name}.ss-during.txt: ss -tanp in the client's "
              f"namespace, then the server's, 0.5 s into {watched}'s wait: the client "
              "SYN-SENT (Send-Q 1: the SYN), the server SYN-RECV (its SYN-ACK dropped). ss "
              f"-tanH at the end: {len(plan)} TIME-WAIT (the client's). Capture "
              + _kib(pcap))

ACCEPT_OVERFLOW = ("10.89.0.1", "10.89.0.2")  # clients, server
ACCEPT_OVERFLOW_DELAY = 0.05  # one way, on the wire
#: port: (listen backlog, connections made one after another first, then at once, the
#: seconds the listener calls no accept(), net.ipv4.tcp_abort_on_overflow)
ACCEPT_OVERFLOW_PLAN = {80: (3, 3, 4, 5.0, 0), 81: (1, 1, 2, 2.0, 1)}
ACCEPT_OVERFLOW_NSTAT = ("TcpExtListenOverflows", "TcpExtListenDrops", "TcpExtTCPReqQFullDrop",
                         "TcpExtTCPReqQFullDoCookies", "TcpExtSyncookiesSent",
                         "TcpExtSyncookiesRecv", "TcpPassiveOpens", "TcpRetransSegs",
                         "TcpExtTCPSynRetrans", "TcpExtTCPTimeouts", "TcpOutRsts",
                         "TcpExtTCPAbortOnData")
ACCEPT_OVERFLOW_CLIENT_NSTAT = ("TcpActiveOpens", "TcpEstabResets", "TcpRetransSegs",
                                "TcpExtTCPTimeouts", "TcpExtTCPSynRetrans")


def _handshakes(packets: list[dict], service: str) -> dict[str, dict]:
    """Per client of `service`, from a capture at the server: its SYNs, the server's
    SYN-ACKs, the client's first ACK of a SYN-ACK (its handshake ACK), the SYN-ACKs sent
    again after that ACK was captured (the ACK was dropped: the request still waits), the
    server's first segment that is neither (its handshake done: it acknowledges data or
    sends its own), and the RSTs of each side."""
    out: dict[str, dict] = {}
    for p in packets:
        client = p["dst"] if p["src"] == service else p["src"]
        if service not in (p["src"], p["dst"]):
            continue
        c = out.setdefault(client, {"syns": [], "synacks": [], "ack": None,
                                    "synacks_after_ack": [], "server_first": None,
                                    "server_rsts": [], "client_rsts": [], "fins": []})
        if p["src"] == client:
            if p["flags"] == {"S"}:
                c["syns"].append(p["t"])
            elif "R" in p["flags"]:
                c["client_rsts"].append(p["t"])
            elif c["ack"] is None and c["synacks"] and "A" in p["flags"]:
                c["ack"] = p["t"]
        else:
            if p["flags"] == {"S", "A"}:
                c["synacks"].append(p["t"])
                if c["ack"] is not None:
                    c["synacks_after_ack"].append(p["t"])
            elif "R" in p["flags"]:
                c["server_rsts"].append(p["t"])
            elif c["server_first"] is None:
                c["server_first"] = p["t"]
        if "F" in p["flags"]:
            c["fins"].append((p["t"], "client" if p["src"] == client else "server"))
    return out


def accept_queue_overflow(ns: Namespace) -> None:
    """A listener that calls no accept() while connections come: the kernel's accept queue
    (listen(backlog): backlog + 1 places) fills. Over a wire with 50 ms each way, 3
    connections to port 80 (listen(3)) complete one after another, then 4 come at once:
    their SYNs are all answered (the request queue holds backlog + 1 too), but of their
    handshake ACKs only the first finds a place; with net.ipv4.tcp_abort_on_overflow=0 the
    others' are dropped, the requests kept, their SYN-ACKs sent again: the clients, ESTABLISHED,
    send their requests, unanswered, until the listener accepts (5 s after it began) and a
    retransmission gets through. Then, with tcp_abort_on_overflow=1, the same on port 81
    (listen(1): 1 then 2 at once): the handshake ACK beyond the queue is answered by a RST.
    net.ipv4.tcp_syncookies=0. Captured at the server."""
    client_ip, server_ip = ACCEPT_OVERFLOW
    name = "accept_queue_overflow"
    pcap = HERE / f"{name}.pcap"
    with Wire(ns, "accept-overflow-server", ACCEPT_OVERFLOW_DELAY, near=client_ip,
              far=server_ip, devices=("ac0", "as0"), seconds=60) as far:
        far.sh("sysctl", "-q", "net.ipv4.tcp_syncookies=0")
        sysctls = {"server": {k: _sysctl(far, k) for k in (
            "net.ipv4.tcp_syncookies", "net.ipv4.tcp_synack_retries", "net.core.somaxconn",
            "net.ipv4.tcp_max_syn_backlog")}}
        far.start_capture(str(pcap), iface="as0")
        phases, during = {}, None
        for port, (backlog, prefill, burst, pause, abort) in ACCEPT_OVERFLOW_PLAN.items():
            far.sh("sysctl", "-q", f"net.ipv4.tcp_abort_on_overflow={abort}")
            aborting = _sysctl(far, "net.ipv4.tcp_abort_on_overflow")
            before = {"server": _nstat(far), "client": _nstat(ns)}
            server = far.peer("server", "backlog", server_ip, str(port), str(backlog),
                              str(pause), str(prefill + (1 if abort else burst)), "1",
                              wait_for="listening")
            server_out = _drain(server)
            client = ns.peer("client", "burst", server_ip, str(port), str(prefill),
                             str(burst), "0.3")
            client_out = _drain(client)
            if during is None:  # the queue full, the burst's handshake ACKs dropped
                time.sleep(prefill * 0.3 + 0.6)
                during = _ss_during(far, ns)
            client_log = _logged(client_out, client)
            server_log = _logged(server_out, server)
            time.sleep(1)
            after = {"server": _nstat(far), "client": _nstat(ns)}
            phases[port] = {"backlog": backlog, "prefill": prefill, "burst": burst,
                            "pause": pause, "tcp_abort_on_overflow": aborting,
                            "client_log": client_log, "server_log": server_log,
                            "nstat": {
                                "server": _nstat_delta(before["server"], after["server"],
                                                       ACCEPT_OVERFLOW_NSTAT),
                                "client": _nstat_delta(before["client"], after["client"],
                                                       ACCEPT_OVERFLOW_CLIENT_NSTAT)}}
        ss = _views(ns, far)
        far.stop_capture(HERE / f"{name}.ss.txt")
    (HERE / f"{name}.ss.txt").write_text(ss)
    _write_during(name, during)
    packets = _packets(pcap)
    per, diagnoses, final = [], [], {}
    for port, ph in phases.items():
        service = f"{server_ip}:{port}"
        seen = _handshakes(packets, service)
        accepted = {e["peer_port"]: e["accepted"] for e in ph["server_log"]
                    if e["event"] == "accepted"}
        connected = {e["port"]: e for e in ph["client_log"] if e["event"] == "connected"}
        ended = {e["port"]: e["outcome"] for e in ph["client_log"] if e["event"] == "end"}
        assert len(connected) == ph["prefill"] + ph["burst"], ph["client_log"]
        assert all(len(seen[f"{client_ip}:{p}"]["syns"]) == 1 for p in connected), seen
        overflowed = []
        for port_, e in sorted(connected.items(), key=lambda kv: kv[1]["connect_start"]):
            c = seen[f"{client_ip}:{port_}"]
            assert c["ack"] is not None, c  # every client acknowledged the SYN-ACK
            dropped_ack = bool(c["synacks_after_ack"]) or bool(
                c["server_rsts"] and not c["server_first"])
            if dropped_ack:
                overflowed.append(port_)
            sent = {(q["seq"], q["len"]) for q in packets if q["src"] == f"{client_ip}:{port_}"
                    and q["dst"] == service and q["len"]}
            per.append({"client": f"{client_ip}:{port_}", "service": service,
                        "group": e["group"], "syn_at": c["syns"][0],
                        "request_bytes_captured": sum(length for _, length in sent),
                        "handshake_ack_at": c["ack"], "handshake_ack_dropped": dropped_ack,
                        "synacks_after_ack": c["synacks_after_ack"],
                        "server_rsts": c["server_rsts"],
                        "server_first_other_segment_at": c["server_first"],
                        "accepted_at": accepted.get(port_),
                        "client_connected_at": e["t"], "client_outcome": ended[port_]})
            final[c["syns"][0]] = ({"client": "CLOSED", "server": "CLOSED"}
                                   if c["server_rsts"] else
                                   {"client": "CLOSED", "server": "TIME_WAIT"})
        n = len(overflowed)
        fits = ph["backlog"] + 1 - ph["prefill"]  # places left in the accept queue
        assert n == ph["burst"] - fits, (port, overflowed)
        burst = [c for c in per if c["service"] == service and c["group"] == "burst"]
        if ph["tcp_abort_on_overflow"]:
            assert all(not c["synacks_after_ack"] for c in burst), burst
            assert sorted(ended[p] for p in overflowed) == ["ECONNRESET"] * n
            assert all(p not in accepted for p in overflowed)
            assert ph["nstat"]["server"]["TcpExtListenOverflows"] == n
            assert ph["nstat"]["client"]["TcpEstabResets"] == n
            diagnoses.append({"name": "accept_queue_overflow", "service": service,
                              "side": "server", "count": n, "how": "rst"})
        else:
            assert all(len(c["synacks_after_ack"]) >= 1 and not c["server_rsts"]
                       for c in burst if int(c["client"].rsplit(":", 1)[1]) in overflowed)
            assert all(ended[p] == "EOF" and p in accepted for p in connected)
            assert ph["nstat"]["server"]["TcpExtListenOverflows"] >= n
            assert ph["nstat"]["server"]["TcpExtTCPSynRetrans"] == sum(
                len(c["synacks_after_ack"]) for c in burst)
            diagnoses.append({"name": "accept_queue_overflow", "service": service,
                              "side": "server", "count": n})
        assert ph["nstat"]["server"]["TcpExtSyncookiesSent"] == 0
        assert ph["nstat"]["server"]["TcpExtTCPReqQFullDrop"] == 0
        ph["handshake_ack_dropped"] = [f"{client_ip}:{p}" for p in overflowed]
    listener = next(ln.split() for ln in during.splitlines() if ln.startswith("LISTEN"))
    backlog80 = phases[80]["backlog"]
    assert listener[1:3] == [str(backlog80 + 1), str(backlog80)], listener
    server_during = during.split("# netns=")[1]
    client_during = during.split("# netns=")[2]
    syn_recv = [ln.split()[4] for ln in server_during.splitlines() if ln.startswith("SYN-RECV")]
    assert sorted(syn_recv) == sorted(phases[80]["handshake_ack_dropped"]), during
    unacked = [ln.split()[3] for ln in client_during.splitlines()
               if ln.startswith("ESTAB") and ln.split()[2] != "0"]
    assert sorted(unacked) == sorted(syn_recv), during
    assert ss_states(ss) == {"TIME-WAIT": len(per) - 1}, ss
    rst_count = _tshark_count(pcap, "tcp.flags.reset==1")
    synack_retrans = _tshark_count(pcap, "tcp.flags.syn==1 && tcp.flags.ack==1 "
                                         "&& tcp.analysis.retransmission")
    retrans = _tshark_count(pcap, "tcp.analysis.retransmission")
    data_retrans = _tshark_count(pcap, "tcp.analysis.retransmission && tcp.len>0")
    dup_acks = _tshark_count(pcap, "tcp.analysis.duplicate_ack")
    convs = _tshark_conversations(pcap)
    assert convs == len(per) and synack_retrans == phases[80]["nstat"]["server"][
        "TcpExtTCPSynRetrans"], (convs, synack_retrans)
    p80, p81 = phases[80], phases[81]
    lost = [{"client": c["client"], "bytes": c["request_bytes_captured"],
             "how": "its request line, sent once connect() returned (the client "
                    "ESTABLISHED), reached a listener with no connection for it: reset, "
                    "never accepted, never read"}
            for c in per if c["server_rsts"]]
    assert lost and all(x["bytes"] == len(b"request\n") for x in lost), lost
    ends = Counter("reset_by_server" if c["server_rsts"] else "closed" for c in per)
    write_expected(
        name,
        description=f"a listener on {server_ip}:80 with listen({p80['backlog']}) calls no "
                    f"accept() for {p80['pause']:g} s; its namespace has "
                    "net.ipv4.tcp_syncookies=0 and net.ipv4.tcp_abort_on_overflow=0; the "
                    f"clients ({client_ip}) are 50 ms away each way (samples/wire.py). "
                    f"{p80['prefill']} connections one after another 0.3 s apart fill the "
                    f"accept queue but for one place (it holds backlog + 1 = "
                    f"{p80['backlog'] + 1}); then {p80['burst']} connect at once: all their "
                    "SYNs are answered (the request queue holds backlog + 1 too), the first "
                    "handshake ACK takes the last place, and the other "
                    f"{len(p80['handshake_ack_dropped'])} are dropped (the queue is full): "
                    "the requests stay in SYN-RECV and the listener sends their SYN-ACKs "
                    "again (1 s, then 2 s later) while the clients, ESTABLISHED, send their "
                    "request line again and again, unanswered. When the listener starts "
                    "accepting, it reads each request and closes (a FIN), and the dropped "
                    "ones complete at their next retransmission. Then on "
                    f"{server_ip}:81, with net.ipv4.tcp_abort_on_overflow=1 and "
                    f"listen({p81['backlog']}): {p81['prefill']} connection, then "
                    f"{p81['burst']} at once: the handshake ACK beyond the queue is answered "
                    "with a RST (and the request after it with another); the listener "
                    f"accepts after {p81['pause']:g} s. Each client sends a request line "
                    "once connect() returns and waits for the server's close. Captured at "
                    "the server",
        connections=len(per), end_kinds=dict(sorted(ends.items())),
        closers={"server": len(per)}, stuck=[],
        final_states=[final[t] for t in sorted(final)],
        diagnoses=diagnoses,
        per_connection=per, requests_lost=lost,
        phases={str(port): {k: v for k, v in ph.items() if k not in ("client_log",
                                                                        "server_log")}
                for port, ph in phases.items()},
        nstat={f"{server_ip}:{port}": ph["nstat"] for port, ph in phases.items()},
        client_logs={str(port): ph["client_log"] for port, ph in phases.items()},
        server_logs={str(port): ph["server_log"] for port, ph in phases.items()},
        sysctls=sysctls,
        tshark={"rst": rst_count, "synack_retransmissions": synack_retrans,
                "retransmissions": retrans, "data_retransmissions": data_retrans,
                "duplicate_acks": dup_acks, "tcp_conversations": convs},
        notes="count (port 80): the connections whose handshake ACK the capture shows and "
              "after which the server sent its SYN-ACK again (per_connection "
              "synacks_after_ack): "
              + ", ".join(phases[80]["handshake_ack_dropped"]) + "; the kernel's view during "
              f"it ({name}.ss-during.txt: ss -tanp in the server's namespace, then the "
              f"clients', 0.6 s after the burst): the listener's Recv-Q {listener[1]} (the "
              f"accept queue, full) and Send-Q {listener[2]} (the backlog), those "
              f"{len(syn_recv)} connections SYN-RECV at the server and ESTAB at the client "
              "with the 8-byte request unacknowledged (Send-Q 8), the others ESTAB on both "
              "sides (queued, Recv-Q 8 at the server). nstat deltas in the server's "
              f"namespace for port 80: TcpExtListenOverflows "
              f"{p80['nstat']['server']['TcpExtListenOverflows']} and TcpExtListenDrops "
              f"{p80['nstat']['server']['TcpExtListenDrops']} (one per segment of those "
              "connections that met the full queue: handshake ACK, requests sent again, "
              "duplicate ACKs answering the SYN-ACKs), TcpExtTCPSynRetrans "
              f"{p80['nstat']['server']['TcpExtTCPSynRetrans']} (the SYN-ACKs sent again), "
              "TcpExtTCPReqQFullDrop 0 and TcpExtSyncookiesSent 0 (no SYN was turned away); "
              "the clients' TcpRetransSegs "
              f"{p80['nstat']['client']['TcpRetransSegs']} (their requests sent again). "
              "Every connection was accepted, late (per_connection accepted_at, the server's "
              f"log: the queued ones when it started accepting, {p80['pause']:g} s after it "
              "listened; the dropped ones at their next retransmission after that): none "
              "was left unaccepted. Port 81 (tcp_abort_on_overflow=1): "
              + ", ".join(phases[81]["handshake_ack_dropped"]) + "'s handshake ACK was "
              "answered by a RST (nstat TcpExtListenOverflows "
              f"{p81['nstat']['server']['TcpExtListenOverflows']}, TcpOutRsts "
              f"{p81['nstat']['server']['TcpOutRsts']}; the client's TcpEstabResets "
              f"{p81['nstat']['client']['TcpEstabResets']}, its recv() ECONNRESET); never "
              "accepted. Its 8-byte request, sent before the RST reached the client, was "
              "lost with it (requests_lost: the capture shows it after the first RST, "
              "answered by a second RST); diagnoses counts it under accept_queue_overflow "
              "(how rst), not as a cause of its own. The sysctl tcp_abort_on_overflow is "
              "per namespace, read when the "
              "ACK comes: the port 80 phase had ended (all its connections accepted and "
              "closed) before it was set to 1. With listen(1) the accept queue and the "
              "request queue each hold 2: a burst on an empty queue fits, and with a full "
              "one the SYNs themselves are dropped; a handshake ACK is dropped only when "
              "more requests wait than places are left, hence the queue filled but for one "
              "place first (listen(3) on port 80 for 3 such connections). tshark -r "
              f"{name}.pcap: -Y 'tcp.flags.syn==1 && tcp.flags.ack==1 && "
              f"tcp.analysis.retransmission' {synack_retrans}; -Y tcp.analysis."
              f"retransmission {retrans} ({data_retrans} with data); -Y tcp.analysis."
              f"duplicate_ack {dup_acks}; -Y tcp.flags.reset==1 {rst_count}; -q -z conv,tcp "
              f"{convs} conversations. ss -tanH at the end: {len(per) - 1} TIME-WAIT at the "
              "server (it closed first), nothing else. Capture " + _kib(pcap))

ZERO_WINDOW = ("10.90.0.1", "10.90.0.2")  # client, server
ZERO_WINDOW_RCVBUF = 4096  # SO_RCVBUF on the listener (the kernel doubles it)
ZERO_WINDOW_PAUSES = (5.0, 2.0)  # the server stops reading this long, one connection each
ZERO_WINDOW_BYTES = 1_000_000
ZERO_WINDOW_FIRST = 1000  # what the server reads before it stops
ZERO_WINDOW_NSTAT = ("TcpExtTCPToZeroWindowAdv", "TcpExtTCPFromZeroWindowAdv",
                     "TcpExtTCPWantZeroWindowAdv", "TcpExtTCPWinProbe",
                     "TcpExtTCPZeroWindowDrop", "TcpExtTCPRcvQDrop", "TcpExtPruneCalled",
                     "TcpRetransSegs", "TcpExtTCPLossProbes")


def _windows(path: Path) -> list[dict]:
    """The capture's TCP segments with their stream, advertised window (scaled, as tshark
    computes it from the handshake) and tshark's analysis flags (zero window, keep-alive,
    window update)."""
    fields = ("tcp.stream", "frame.time_epoch", "ip.src", "tcp.srcport", "tcp.len",
              "tcp.window_size", "tcp.analysis.zero_window", "tcp.analysis.keep_alive",
              "tcp.analysis.window_update")
    out = subprocess.run(["tshark", "-n", "-r", str(path), "-Y", "tcp", "-T", "fields",
                          *(x for f in fields for x in ("-e", f))],
                         capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        stream, t, ip, port, length, window, zero, probe, update = line.split("\t")
        rows.append({"stream": int(stream), "t": float(t), "src": f"{ip}:{port}",
                     "len": int(length), "window": int(window), "zero": bool(zero),
                     "probe": bool(probe), "update": bool(update)})
    return rows


def zero_window_stall(ns: Namespace) -> None:
    """A server that stops reading: its receive buffer small (SO_RCVBUF 4096 on the
    listener), it reads 1000 bytes of each upload, then nothing for 5 s (the first
    connection) or 2 s (the second), while the client sends 1 MB: the window closes (the
    server advertises 0), the client's persist timer sends window probes, answered with a
    zero window; then the server reads everything, its window opens and the transfer
    completes. Captured at the server, snaplen 96 (headers whole, payloads cut)."""
    client_ip, server_ip = ZERO_WINDOW
    name, service = "zero_window_stall", f"{server_ip}:80"
    pcap = HERE / f"{name}.pcap"
    with Veth(ns, "zero-window-server", client_ip, server_ip) as far:
        server = far.peer("server", "stall", server_ip, "80", str(ZERO_WINDOW_RCVBUF),
                          ",".join(f"{p:g}" for p in ZERO_WINDOW_PAUSES),
                          str(ZERO_WINDOW_FIRST), wait_for="listening")
        server_out = _drain(server)
        ratelimit_ms = _sysctl(far, "net.ipv4.tcp_invalid_ratelimit")
        before = {"server": _nstat(far), "client": _nstat(ns)}
        far.start_capture(str(pcap), iface="f0", snaplen=96)
        client = ns.peer("client", "send", server_ip, "80", str(ZERO_WINDOW_BYTES),
                         str(len(ZERO_WINDOW_PAUSES)), "0.5")
        client_out = _drain(client)
        time.sleep(2.0)  # 2 s into the first stall
        during = _ss_during(far, ns)
        client_log = _logged(client_out, client)
        server_log = _logged(server_out, server)
        time.sleep(1)
        after = {"server": _nstat(far), "client": _nstat(ns)}
        ss = _views(ns, far)
        far.stop_capture(HERE / f"{name}.ss.txt")
    (HERE / f"{name}.ss.txt").write_text(ss)
    _write_during(name, during)
    assert ss_states(ss) == {"TIME-WAIT": len(ZERO_WINDOW_PAUSES)}, ss
    nstat = {role: _nstat_delta(before[role], after[role], ZERO_WINDOW_NSTAT)
             for role in before}
    sent = [e for e in client_log if e["event"] == "sent"]
    pauses = [e for e in server_log if e["event"] == "pause"]
    resumes = [e for e in server_log if e["event"] == "resume"]
    eofs = [e for e in server_log if e["event"] == "eof"]
    assert len(sent) == len(resumes) == len(eofs) == len(ZERO_WINDOW_PAUSES)
    assert all(e["read"] == ZERO_WINDOW_BYTES for e in eofs), eofs  # every byte came
    rows = _windows(pcap)
    ratelimit = ratelimit_ms / 1000
    per = []
    for pause, resume, e in zip(pauses, resumes, sent, strict=True):
        client = f"{client_ip}:{e['port']}"
        assert pause["peer_port"] == e["port"]
        stream = next(r["stream"] for r in rows if r["src"] == client)
        conn = [r for r in rows if r["stream"] == stream]
        from_server = [r for r in conn if r["src"] == service]
        zeros = [r for r in from_server if r["window"] == 0]
        # the probes answered (a zero window right after) and not: the kernel answers an
        # out-of-window segment at most once per tcp_invalid_ratelimit
        answered = [r for r in conn if r["src"] == client and r["probe"] and any(
            z["t"] > r["t"] and z["t"] - r["t"] < 0.005 for z in zeros)]
        assert zeros and all(r["zero"] for r in zeros), zeros
        first_zero = zeros[0]["t"]
        reopened = next(r for r in from_server if r["t"] > first_zero and r["window"] > 0)
        assert all(r["window"] == 0 for r in from_server if first_zero <= r["t"]
                   < reopened["t"])
        probes = [r for r in conn if r["src"] == client and r["probe"]]
        assert probes and all(first_zero < r["t"] < reopened["t"] for r in probes)
        assert len(answered) == len(zeros) - 1, (answered, zeros)
        last = None
        for r in probes:
            if r in answered:
                assert last is None or r["t"] - last >= ratelimit, (r, last)
                last = r["t"]
            else:
                assert last is not None and r["t"] - last < ratelimit, (r, last)
        stall = reopened["t"] - first_zero
        assert abs(stall - resume["paused"]) < 0.1, (stall, resume)
        per.append({"client": client, "server_paused_s": resume["paused"],
                    "server_paused_from": resume["paused_from"],
                    "server_read_before_pause": pause["read"],
                    "receive_queue_at_pause": pause["queued"],
                    "receive_queue_at_resume": resume["queued"],
                    "server_so_rcvbuf": pause["rcvbuf"],
                    "first_zero_window_at": first_zero, "window_reopened_at": reopened["t"],
                    "reopened_window": reopened["window"],
                    "zero_window_s": round(stall, 6),
                    "zero_window_segments": len(zeros),
                    "window_probes": len(probes), "probes_answered": len(answered),
                    "probe_times": [round(r["t"] - first_zero, 3) for r in probes],
                    "client_sent": e["bytes"], "server_read": ZERO_WINDOW_BYTES,
                    "client_all_sent_at": e["all_sent"]})
    longest = max(resume["paused"] for resume in resumes)
    zero_count = _tshark_count(pcap, "tcp.analysis.zero_window")
    probe_count = _tshark_count(pcap, "tcp.analysis.keep_alive")
    update_count = _tshark_count(pcap, "tcp.analysis.window_update")
    full_count = _tshark_count(pcap, "tcp.analysis.window_full")
    retrans = _tshark_count(pcap, "tcp.analysis.retransmission")
    convs = _tshark_conversations(pcap)
    # a retransmission, when there is one, is the client's tail loss probe at the start, the
    # window full while the server delayed its ACK: then its first zero window came late
    assert retrans == nstat["client"]["TcpRetransSegs"] == nstat["client"][
        "TcpExtTCPLossProbes"], (retrans, nstat)
    assert convs == len(ZERO_WINDOW_PAUSES) and probe_count == sum(
        c["window_probes"] for c in per) == nstat["client"]["TcpExtTCPWinProbe"], (
        convs, probe_count, nstat)
    assert nstat["server"]["TcpExtTCPToZeroWindowAdv"] == len(ZERO_WINDOW_PAUSES)
    srv_during = during.split("# netns=")[1]
    cli_during = during.split("# netns=")[2]
    stalled = [ln.split() for ln in srv_during.splitlines() if ln.startswith("ESTAB")]
    sending = [ln.split() for ln in cli_during.splitlines() if ln.startswith("ESTAB")]
    assert len(stalled) == len(sending) == 1 and int(stalled[0][1]) > 0 \
        and int(sending[0][2]) > 0, during
    write_expected(
        name,
        description=f"a server on {service} with SO_RCVBUF {ZERO_WINDOW_RCVBUF} on its "
                    "listener (the kernel doubles it: "
                    f"{per[0]['server_so_rcvbuf']}) takes {len(ZERO_WINDOW_PAUSES)} uploads "
                    f"of {ZERO_WINDOW_BYTES:,} bytes from {client_ip}, one after another; "
                    f"of each it reads {ZERO_WINDOW_FIRST} bytes, then stops reading for "
                    + " s (the first) and ".join(f"{p:g}" for p in ZERO_WINDOW_PAUSES)
                    + " s (the second): its receive buffer fills and it advertises a zero "
                    "window; the client's persist timer sends window probes, answered "
                    "with zero windows; then the server reads everything, its window "
                    "opens (a window update) and the upload completes. The client sends as "
                    "fast as the window lets, then shutdown(SHUT_WR); the server reads to "
                    "EOF and closes. Captured at the server with snaplen 96 (headers whole, "
                    "payloads cut)",
        connections=len(per), end_kinds={"closed": len(per)}, closers={"client": len(per)},
        stuck=[], final_states=[{"client": "TIME_WAIT", "server": "CLOSED"}] * len(per),
        diagnoses=[{"name": "zero_window_stall", "service": service, "side": "server",
                    "count": len(per), "longest_s": round(longest, 2), "recovered": True}],
        per_connection=per, nstat=nstat, client_log=client_log, server_log=server_log,
        sysctls={"server": {"net.ipv4.tcp_invalid_ratelimit": ratelimit_ms}},
        tshark={"zero_window": zero_count, "keep_alive": probe_count,
                "window_update": update_count, "window_full": full_count,
                "retransmissions": retrans, "tcp_conversations": convs},
        notes="longest_s: the longest pause, as the server's own clock timed it (its log, "
              "resume.paused: "
              + ", ".join(f"{c['server_paused_s']:.3f}" for c in per) + " s); in the "
              "capture each zero-window stretch, from the server's first segment "
              "advertising a window of 0 to its window update, lasts "
              + ", ".join(f"{c['zero_window_s']:.3f}" for c in per) + " s (per_connection "
              "zero_window_s). The window closed at once: the server's receive queue held "
              + ", ".join(str(c["receive_queue_at_pause"]) for c in per) + " bytes when it "
              "stopped reading (FIONREAD), and the same when it resumed. Linux's window "
              "probes carry no data and the sequence number snd_una - 1, which tshark "
              f"calls keep-alives: -Y tcp.analysis.keep_alive {probe_count} (per "
              "connection "
              + ", ".join(str(c["window_probes"]) for c in per) + ", at "
              + "; ".join(", ".join(f"{t:g}" for t in c["probe_times"]) for c in per)
              + " s after the window closed: the persist timer's backoff), equal to the "
              f"client's nstat TcpExtTCPWinProbe {nstat['client']['TcpExtTCPWinProbe']}; "
              f"-Y tcp.analysis.zero_window {zero_count} (the server's first zero-window "
              "segment of each stall and its answers to the probes: "
              + ", ".join(f"{c['probes_answered']} of {c['window_probes']}" for c in per)
              + "; the kernel answers an out-of-window segment at most once per "
              f"net.ipv4.tcp_invalid_ratelimit, {ratelimit_ms} ms, and each unanswered "
              "probe came sooner than that after the last answered one); -Y "
              f"tcp.analysis.window_update {update_count}; -Y tcp.analysis.window_full "
              f"{full_count}; -Y tcp.analysis.retransmission {retrans}"
              + (f" (the client's tail loss probes, nstat TcpExtTCPLossProbes "
                 f"{nstat['client']['TcpExtTCPLossProbes']}: the window full at once while "
                 "the server delayed its ACK, which then came with the first zero window; "
                 "this varies from run to run, and so does how soon after the pause the "
                 "window is first seen closed)" if retrans else "") + "; -q -z conv,tcp "
              f"{convs} conversations. nstat deltas: the server's TcpExtTCPToZeroWindowAdv "
              f"{nstat['server']['TcpExtTCPToZeroWindowAdv']} and "
              f"TcpExtTCPFromZeroWindowAdv {nstat['server']['TcpExtTCPFromZeroWindowAdv']} "
              "(one closing and one reopening per stall). Every byte arrived: the server "
              f"read {ZERO_WINDOW_BYTES:,} bytes from each (its log). {name}.ss-during.txt: "
              "ss -tanp in the server's namespace, then the client's, 2 s into the first "
              f"stall: the server's socket with Recv-Q {stalled[0][1]} (unread), the "
              f"client's with Send-Q {sending[0][2]} (unsent or unacknowledged). ss -tanH "
              f"at the end: {len(per)} TIME-WAIT (the client's). Capture " + _kib(pcap))


TIME_WAIT = ("10.91.0.1", "10.91.0.2", "10.91.0.3")  # client, server, the control client
TIME_WAIT_PORTS = (40000, 40199)  # the client's net.ipv4.ip_local_port_range
TIME_WAIT_RATE = 100  # the client's connections a second (attempts: one every 10 ms)
TIME_WAIT_CONTROL_RATE = 2
TIME_WAIT_SECONDS = 5
TIME_WAIT_NSTAT = ("TcpActiveOpens", "TcpAttemptFails", "TcpExtTW", "TcpExtTWRecycled",
                   "TcpExtTWKilled", "TcpExtTCPTimeWaitOverflow")


def _bridged(server: Namespace, clients: list[tuple[Namespace, str, str, str]],
             server_ip: str) -> None:
    """The server's namespace holds a bridge (br0, `server_ip`/24) with one veth port per
    client namespace (client device, its address, the server-side port's name); static
    neighbours, offloads and IPv6 off: a capture on br0 sees every client's TCP and
    nothing else."""
    mac = "02:00:0a:5b:00:02"
    server.sh("ip", "link", "add", "br0", "address", mac, "type", "bridge")
    _no_offloads(server, "br0")
    for ns, dev, ip, port in clients:
        ns.sh("ip", "link", "add", dev, "type", "veth", "peer", "name", port)
        ns.sh("ip", "link", "set", port, "netns", server.name)
        _no_offloads(ns, dev)
        _no_offloads(server, port)
        server.sh("ip", "link", "set", port, "master", "br0")
        server.sh("ip", "link", "set", port, "up")
        ns.sh("ip", "addr", "add", f"{ip}/24", "dev", dev)
        ns.sh("ip", "link", "set", dev, "up")
        ns.sh("ip", "neigh", "add", server_ip, "lladdr", mac, "dev", dev, "nud", "permanent")
        server.sh("ip", "neigh", "add", ip, "lladdr", _mac(ns, dev), "dev", "br0", "nud",
                  "permanent")
    server.sh("ip", "addr", "add", f"{server_ip}/24", "dev", "br0")
    server.sh("ip", "link", "set", "br0", "up")


def time_wait_pressure(ns: Namespace) -> None:
    """Local ports used up by TIME_WAIT: a client whose namespace has 200 local ports
    (net.ipv4.ip_local_port_range 40000 40199) and net.ipv4.tcp_tw_reuse=0 opens short
    connections (a request line, a reply, the client closes first: its socket stays 60 s
    in TIME_WAIT) at 100 a second for 5 s: after 2 s every port is in TIME_WAIT and
    connect() fails with EADDRNOTAVAIL (no SYN is sent). The negative control: another
    client namespace with the defaults connects twice a second. Both reach the server
    through a bridge in its namespace; captured on the bridge."""
    client_ip, server_ip, control_ip = TIME_WAIT
    name, service = "time_wait_pressure", f"{server_ip}:80"
    pcap = HERE / f"{name}.pcap"
    lo, hi = TIME_WAIT_PORTS
    with Namespace("time-wait-server") as far, Namespace("time-wait-control") as control:
        _bridged(far, [(ns, "n0", client_ip, "f0"), (control, "c0", control_ip, "f1")],
                 server_ip)
        ns.sh("sysctl", "-q", f"net.ipv4.ip_local_port_range={lo} {hi}")
        ns.sh("sysctl", "-q", "net.ipv4.tcp_tw_reuse=0")
        keys = ("net.ipv4.ip_local_port_range", "net.ipv4.tcp_tw_reuse",
                "net.ipv4.tcp_max_tw_buckets")
        sysctls = {role: {k: " ".join(x.sh("sysctl", "-n", k, capture_output=True,
                                            text=True).stdout.split())
                          for k in keys} for role, x in (("client", ns), ("control", control))}
        server = far.peer("server", "serve", server_ip, "80", "15", wait_for="listening")
        server_out = _drain(server)
        before = {"client": _nstat(ns), "control": _nstat(control)}
        far.start_capture(str(pcap), iface="br0")
        watcher = _watch(ns, TIME_WAIT_SECONDS + 3, 0.05)
        ctl = control.peer("client", "churn", server_ip, "80", str(TIME_WAIT_CONTROL_RATE),
                           str(TIME_WAIT_SECONDS))
        ctl_out = _drain(ctl)
        client = ns.peer("client", "churn", server_ip, "80", str(TIME_WAIT_RATE),
                         str(TIME_WAIT_SECONDS))
        client_log, during = [], None
        for line in client.stdout:
            e = json.loads(line)
            client_log.append(e)
            if e["event"] == "failed" and during is None:
                during = _ss_during(ns, far, control)
        client.wait(timeout=30)
        control_log = _logged(ctl_out, ctl)
        time.sleep(1)
        polls = _polls(watcher)
        after = {"client": _nstat(ns), "control": _nstat(control)}
        ss = _views(ns, far, control)
        far.stop_capture(HERE / f"{name}.ss.txt")
        server.kill()
        server_log = _logged(server_out, server)
    (HERE / f"{name}.ss.txt").write_text(ss)
    _write_during(name, during)
    nstat = {role: _nstat_delta(before[role], after[role], TIME_WAIT_NSTAT) for role in before}
    ok = [e for e in client_log if e["event"] == "ok"]
    failed = [e for e in client_log if e["event"] == "failed"]
    ctl_ok = [e for e in control_log if e["event"] == "ok"]
    ctl_failed = [e for e in control_log if e["event"] == "failed"]
    port_range = hi - lo + 1
    assert len(ok) == port_range and {e["port"] for e in ok} == set(range(lo, hi + 1)), ok
    assert failed and {e["error"] for e in failed} == {"EADDRNOTAVAIL"}, failed
    assert min(e["attempt"] for e in failed) > max(e["attempt"] for e in ok)
    assert all(e["outcome"] == "reply" for e in ok + ctl_ok) and not ctl_failed
    states = ss_states(ss)
    assert states == {"TIME-WAIT": port_range + len(ctl_ok)}, ss
    tw_peak = max(ss_states(view)["TIME-WAIT"] for _, view in polls)
    peak_at = next(t for t, view in polls if ss_states(view)["TIME-WAIT"] == tw_peak)
    assert tw_peak == port_range, tw_peak
    packets = _packets(pcap)
    syns = sorted(p["t"] for p in packets if p["flags"] == {"S"}
                  and p["src"].startswith(client_ip + ":"))
    ctl_syns = [p for p in packets if p["flags"] == {"S"}
                and p["src"].startswith(control_ip + ":")]
    assert len(syns) == port_range and len(ctl_syns) == len(ctl_ok), (len(syns), ctl_syns)
    # the most SYNs from the client in any one second (a window starting at each SYN)
    peak_rate = max(sum(1 for u in syns if t <= u < t + 1.0) for t in syns)
    per_second = Counter(int(t - syns[0]) for t in syns)
    span = syns[-1] - syns[0]
    convs = _tshark_conversations(pcap)
    syn_count = _tshark_count(pcap, f"tcp.flags.syn==1 && tcp.flags.ack==0 && "
                                    f"ip.src=={client_ip}")
    fin_first = _tshark_count(pcap, f"tcp.flags.fin==1 && ip.src=={client_ip}")
    rst_count = _tshark_count(pcap, "tcp.flags.reset==1")
    reuse = _tshark_count(pcap, "tcp.analysis.reused_ports")
    assert convs == port_range + len(ctl_ok) and syn_count == port_range and rst_count == 0
    # this kernel counts TcpExtTW as a socket enters TIME_WAIT (__inet_twsk_schedule)
    assert nstat["client"]["TcpExtTW"] == port_range, nstat
    accepted = [e for e in server_log if e["event"] == "accepted"]
    assert len(accepted) == port_range + len(ctl_ok), len(accepted)
    first_fail, last_ok = min(e["attempt"] for e in failed), max(e["attempt"] for e in ok)
    attempts = next(e["attempts"] for e in client_log if e["event"] == "done")
    assert attempts == TIME_WAIT_RATE * TIME_WAIT_SECONDS == len(ok) + len(failed)
    assert abs(peak_rate - TIME_WAIT_RATE) <= 1, peak_rate
    during_tw = ss_states(during.split("# netns=")[1])["TIME-WAIT"]
    n = port_range + len(ctl_ok)
    write_expected(
        name,
        description=f"a client ({client_ip}) in a namespace with "
                    f"net.ipv4.ip_local_port_range={lo} {hi} ({port_range} ports) and "
                    "net.ipv4.tcp_tw_reuse=0 opens short connections to "
                    f"{service}, one attempt every {1000 / TIME_WAIT_RATE:g} ms for "
                    f"{TIME_WAIT_SECONDS} s: a request line, a reply, the client closes "
                    "first, so each of its sockets stays in TIME_WAIT (60 s). After "
                    f"{port_range} connections every local port is in TIME_WAIT with the "
                    "same server address and port, and connect() fails with EADDRNOTAVAIL "
                    "(no SYN sent) for the rest of the run. The negative control: a client "
                    f"({control_ip}) in a namespace of its own with the default settings "
                    f"connects {TIME_WAIT_CONTROL_RATE} times a second meanwhile. Both reach "
                    "the server through a bridge in its namespace (one veth each); "
                    "captured on the bridge",
        connections=n, end_kinds={"closed": n}, closers={"client": n}, stuck=[],
        final_states=[{"client": "TIME_WAIT", "server": "CLOSED"}] * n,
        diagnoses=[{"name": "time_wait_pressure", "service": service, "side": "client",
                    "client": client_ip, "count": port_range,
                    "peak_rate_per_s": TIME_WAIT_RATE,
                    "time_wait_peak": tw_peak, "port_range": port_range,
                    "connect_failures": len(failed)}],
        not_diagnosed=[{"name": "time_wait_pressure", "client": control_ip,
                        "connections": [f"{control_ip}:{e['port']}" for e in ctl_ok],
                        "why": f"the negative control: {len(ctl_ok)} connections at "
                               f"{TIME_WAIT_CONTROL_RATE} a second from the default port "
                               "range (tcp_tw_reuse at its default), no connect() failed"}],
        client={"attempts": attempts, "connected": len(ok), "connect_failures": len(failed),
                "errors": dict(Counter(e["error"] for e in failed)),
                "first_connect": min(e["attempt"] for e in ok), "last_connect": last_ok,
                "first_failure": first_fail,
                "last_failure": max(e["attempt"] for e in failed),
                "ports_used": [min(e["port"] for e in ok), max(e["port"] for e in ok)]},
        control={"attempts": len(ctl_ok), "connected": len(ctl_ok), "connect_failures": 0,
                 "ports": sorted(e["port"] for e in ctl_ok)},
        capture={"client_syns": len(syns), "first_syn": syns[0], "last_syn": syns[-1],
                 "most_syns_in_one_second": peak_rate,
                 "span_s": round(span, 3), "syns_per_second": [per_second[k] for k in
                                                              sorted(per_second)],
                 "control_syns": len(ctl_syns)},
        time_wait_polls={"peak": tw_peak, "first_at_peak": peak_at,
                         "interval_s": 0.05, "polls": len(polls)},
        nstat=nstat, sysctls=sysctls,
        tshark={"client_syns": syn_count, "client_fins": fin_first, "rst": rst_count,
                "reused_ports": reuse, "tcp_conversations": convs},
        notes="count: the client's connections in the capture, one per local port of its "
              f"range ({lo}-{hi}), every one closed by it first. connect_failures: the "
              "client's log, every one EADDRNOTAVAIL, all after its last connection "
              f"(first failure {first_fail - last_ok:.3f} s after the last connect "
              f"attempt that succeeded; {attempts} attempts in all: "
              f"{len(ok)} connected, {len(failed)} failed). The most SYNs from the client in any "
              "one second of the capture (a window starting at each SYN): "
              f"{peak_rate}; the client's schedule was {TIME_WAIT_RATE} a second, and its "
              f"{len(syns)} SYNs span {span:.2f} s (per whole second from the first: "
              + ", ".join(str(per_second[k]) for k in sorted(per_second)) + "). "
              "peak_rate_per_s is the client's schedule; measured, any one-second window "
              "holds it give or take one SYN (timer jitter). connect_failures is fixed by "
              f"the design: {attempts} attempts, {port_range} ports. "
              "time_wait_peak: the most TIME-WAIT sockets in the client's namespace in "
              f"ss -tanH polled every 0.05 s during the run ({len(polls)} polls): "
              f"{tw_peak}, the whole range, first seen at {peak_at:.3f}; ss -tanp when "
              f"the first connect() failed ({name}.ss-during.txt: the client's namespace, "
              f"then the server's, then the control's) shows {during_tw}. nstat deltas in "
              "the client's namespace (nstat): TcpActiveOpens "
              f"{nstat['client']['TcpActiveOpens']}, TcpExtTW "
              f"{nstat['client']['TcpExtTW']} (this kernel counts a socket as it enters "
              "TIME_WAIT, __inet_twsk_schedule; the control's "
              f"{nstat['control']['TcpExtTW']}), TcpExtTWRecycled "
              f"{nstat['client']['TcpExtTWRecycled']} (no TIME_WAIT port reused); "
              "EADDRNOTAVAIL from connect() counts in no SNMP counter. tshark -r "
              f"{name}.pcap: -Y 'tcp.flags.syn==1 && tcp.flags.ack==0 && "
              f"ip.src=={client_ip}' {syn_count}; FINs from the client {fin_first}; -Y "
              f"tcp.flags.reset==1 {rst_count}; -Y tcp.analysis.reused_ports {reuse}; "
              f"-q -z conv,tcp {convs} conversations ({port_range} + {len(ctl_ok)} of the "
              f"control). ss -tanH at the end: {port_range} TIME-WAIT in the client's "
              f"namespace, {len(ctl_ok)} in the control's, none at the server (it closed "
              "second). Capture " + _kib(pcap))


REFUSED_BURST = ("10.92.0.1", "10.92.0.2")  # client, server
REFUSED_BURST_PLAN = (10, 3.05, 10)  # connections served, seconds down, connections served
#: (3.05 s: the listener comes back between two connects, 50 ms from each)
REFUSED_BURST_EVERY = 0.1  # the client's connects, one every so often
REFUSED_BURST_CLOSED = (9999, 4, 1.5)  # a port nobody listens on: attempts, seconds apart
REFUSED_BURST_NSTAT = ("TcpActiveOpens", "TcpAttemptFails", "TcpOutRsts", "TcpInErrs")


def refused_burst(ns: Namespace) -> None:
    """A service that goes away for 3 s and comes back: it serves 10 connections (from a
    client connecting every 0.1 s: a request line, a reply, the client closes first),
    closes its listener (right after the 10th connection closed: none waits in its queue),
    listens again 3 s later and serves 10 more; meanwhile every connect is refused (RST).
    And a port where nothing ever listens, tried 4 times 1.5 s apart during the same run.
    Captured at the client."""
    client_ip, server_ip = REFUSED_BURST
    name = "refused_burst"
    pcap = HERE / f"{name}.pcap"
    before_n, down, after_n = REFUSED_BURST_PLAN
    closed_port, closed_n, closed_gap = REFUSED_BURST_CLOSED
    service, closed_service = f"{server_ip}:8080", f"{server_ip}:{closed_port}"
    with Veth(ns, "refused-burst-server", client_ip, server_ip) as far:
        server = far.peer("server", "flap", server_ip, "8080", str(before_n), str(down),
                          str(after_n), "5", wait_for="listening")
        server_out = _drain(server)
        before = {"client": _nstat(ns), "server": _nstat(far)}
        ns.start_capture(str(pcap), iface="n0")
        client = ns.peer("client", "every", server_ip, "8080", str(REFUSED_BURST_EVERY),
                         str(after_n), "200")
        time.sleep(0.5)
        other = ns.peer("client", "every", server_ip, str(closed_port), str(closed_gap),
                        "1", str(closed_n))
        other_out = _drain(other)
        client_log, during = [], None
        for line in client.stdout:
            e = json.loads(line)
            client_log.append(e)
            if e["event"] == "refused" and during is None:
                during = _ss_during(ns, far)  # the service down: no listener on 8080
        client.wait(timeout=60)
        other_log = _logged(other_out, other)
        time.sleep(1)
        after = {"client": _nstat(ns), "server": _nstat(far)}
        ss = _views(ns, far)
        ns.stop_capture(HERE / f"{name}.ss.txt")
        server_log = _logged(server_out, server, timeout=30)
    (HERE / f"{name}.ss.txt").write_text(ss)
    _write_during(name, during)
    nstat = {role: _nstat_delta(before[role], after[role], REFUSED_BURST_NSTAT)
             for role in before}
    ok = [e for e in client_log if e["event"] == "ok"]
    refused = [e for e in client_log if e["event"] == "refused"]
    other_refused = [e for e in other_log if e["event"] == "refused"]
    assert len(ok) == before_n + after_n and len(other_refused) == closed_n, (ok, other_log)
    assert not [e for e in other_log if e["event"] == "ok"]
    went_down = next(e["t"] for e in server_log if e["event"] == "down")
    came_up = next(e["t"] for e in server_log if e["event"] == "up")
    # the refusals are one run, between the service's two lives
    ns_ = [e["n"] for e in refused]
    assert ns_ == list(range(ns_[0], ns_[0] + len(ns_))), ns_
    assert all(went_down < e["attempt"] < came_up + 0.01 for e in refused), (refused, went_down)
    assert sum(e["n"] < ns_[0] for e in ok) == before_n
    assert ss_states(ss) == {"TIME-WAIT": len(ok)}, ss
    packets = _packets(pcap)
    syns = {p["src"]: p for p in packets if p["flags"] == {"S"}}
    rsts = [p for p in packets if "R" in p["flags"]]
    assert len(syns) == len(ok) + len(refused) + closed_n, len(syns)  # no port used twice
    assert all(p["src"] in (service, closed_service) and p["flags"] == {"R", "A"}
               and p["len"] == 0 for p in rsts), rsts
    refused_syns = sorted(syns[p["dst"]]["t"] for p in rsts if p["src"] == service)
    closed_syns = sorted(syns[p["dst"]]["t"] for p in rsts if p["src"] == closed_service)
    assert len(refused_syns) == len(refused) and len(closed_syns) == closed_n
    ok_syns = sorted(syns[f"{client_ip}:{e['port']}"]["t"] for e in ok)
    assert ok_syns[before_n - 1] < refused_syns[0] and refused_syns[-1] < ok_syns[before_n]
    assert all(abs(a - e["attempt"]) < 0.01
               for a, e in zip(refused_syns, refused, strict=True))
    # the service's close and return lie well between two connects: the count is stable
    margins = (refused_syns[0] - went_down, came_up - refused_syns[-1],
               ok_syns[before_n] - came_up)
    assert min(margins) > 0.02, margins
    rst_count = _tshark_count(pcap, "tcp.flags.reset==1")
    rst_8080 = _tshark_count(pcap, "tcp.flags.reset==1 && tcp.srcport==8080")
    rst_closed = _tshark_count(pcap, f"tcp.flags.reset==1 && tcp.srcport=={closed_port}")
    syn_count = _tshark_count(pcap, "tcp.flags.syn==1 && tcp.flags.ack==0")
    convs = _tshark_conversations(pcap)
    assert rst_8080 == len(refused) and rst_closed == closed_n and convs == len(syns)
    assert nstat["client"]["TcpAttemptFails"] == len(refused) + closed_n, nstat
    assert nstat["server"]["TcpOutRsts"] == len(refused) + closed_n, nstat
    server_during = during.split("# netns=")[2]
    assert not re.search(r"LISTEN .*:8080 ", server_during), during
    final = {syns[f"{client_ip}:{e['port']}"]["t"]: {"client": "TIME_WAIT", "server": "CLOSED"}
             for e in ok}
    final.update({t: {"client": "CLOSED", "server": "CLOSED"}
                  for t in refused_syns + closed_syns})
    n_refused = len(refused) + closed_n
    write_expected(
        name,
        description=f"a service on {service} serves {before_n} connections, closes its "
                    f"listener (right after the {before_n}th connection closed), listens "
                    f"again {down:g} s later and serves {after_n} more; a client "
                    f"({client_ip}) connects every {REFUSED_BURST_EVERY:g} s (a request "
                    "line, a reply, the client closes first) until it has been answered "
                    f"{after_n} times after a refusal: while the service is down every "
                    f"connect is refused, the SYN answered by a RST ({len(refused)} of "
                    f"them). Meanwhile another client connects {closed_n} times, "
                    f"{closed_gap:g} s apart, to {closed_service}, where nothing ever "
                    "listens: refused each time. Captured at the client",
        connections=len(syns),
        end_kinds={"closed": len(ok), "refused": n_refused},
        closers={"client": len(ok), "none": n_refused}, stuck=[],
        final_states=[final[t] for t in sorted(final)],
        diagnoses=[{"name": "refused_burst", "service": service, "side": "server",
                    "count": len(refused), "from": refused_syns[0], "to": refused_syns[-1],
                    "accepted_before_and_after": True},
                   {"name": "refused_burst", "service": closed_service, "side": "server",
                    "count": closed_n, "from": closed_syns[0], "to": closed_syns[-1],
                    "accepted_before_and_after": False}],
        service_down={"listener_closed_at": went_down, "listening_again_at": came_up,
                      "down_s": round(came_up - went_down, 3),
                      "last_answered_syn_before": ok_syns[before_n - 1],
                      "first_answered_syn_after": ok_syns[before_n]},
        refused_syn_times={service: refused_syns, closed_service: closed_syns},
        client_log=client_log, closed_port_client_log=other_log, server_log=server_log,
        nstat=nstat,
        tshark={"rst": rst_count, "rst_from_8080": rst_8080,
                f"rst_from_{closed_port}": rst_closed, "syn": syn_count,
                "tcp_conversations": convs},
        notes="count: the client's refused connects (its log: ConnectionRefusedError), each "
              "a SYN answered by a RST/ACK in the capture; from and to: the first and last "
              "refused SYN's capture time (epoch seconds). The service's own log dates "
              f"its listener's close at {went_down:.3f} and its return at {came_up:.3f} "
              f"({came_up - went_down:.2f} s: service_down); the refusals are attempts "
              f"{ns_[0]} to {ns_[-1]} of the client's schedule, between its {before_n}th "
              f"and {before_n + 1}th answered connection (accepted before and after). How "
              "many connects fall in the gap is fixed by the design: the listener closes "
              "right after a connection, so the next connect comes "
              f"{margins[0] * 1e3:.0f} ms after the close, and it returns "
              f"{margins[1] * 1e3:.0f} ms after the last refused SYN and "
              f"{margins[2] * 1e3:.0f} ms before the next connect ({down:g} s down: "
              "between two connects); the log, the capture and nstat agree. "
              f"{closed_service}: {closed_n} refused, never accepted. nstat deltas: the "
              f"client's TcpAttemptFails {nstat['client']['TcpAttemptFails']} (every "
              "refused connect), the server's TcpOutRsts "
              f"{nstat['server']['TcpOutRsts']}. tshark -r {name}.pcap: -Y "
              f"tcp.flags.reset==1 {rst_count} ({rst_8080} from port 8080, {rst_closed} "
              f"from port {closed_port}); SYNs {syn_count}; -q -z conv,tcp {convs} "
              f"conversations. {name}.ss-during.txt: ss -tanp in the client's namespace, "
              "then the server's, when the client logged its first refusal: no listener "
              "on 8080 (the server's process alive, between its two listeners). ss -tanH "
              f"at the end: {len(ok)} TIME-WAIT (the client's). Capture " + _kib(pcap))


SYN_COOKIES = ("10.93.0.1", "10.93.0.2")  # client, server
SYN_COOKIES_BACKLOG = 4  # the listener's: its request (SYN) queue holds as many
SYN_COOKIES_FLOOD = (50001, 6)  # the flood's first local port, and its SYNs
#: (phase, the listener's net.ipv4.tcp_syncookies, the client's net.ipv4.tcp_timestamps,
#: whether the flood holds the request queue full, connections made)
SYN_COOKIES_PLAN = (("before", 1, 0, False, 2), ("flood", 1, 0, True, 3),
                    ("flood_timestamps", 1, 1, True, 2), ("forced", 2, 0, False, 2))
SYN_COOKIES_NSTAT = ("TcpExtSyncookiesSent", "TcpExtSyncookiesRecv", "TcpExtSyncookiesFailed",
                     "TcpExtTCPReqQFullDoCookies", "TcpExtTCPReqQFullDrop",
                     "TcpExtListenOverflows", "TcpExtListenDrops", "TcpPassiveOpens")


def _handshake_options(path: Path) -> list[dict]:
    """The SYNs and SYN-ACKs of a capture, as tshark reads them: t, src, dst, synack, and
    the options they carry: wscale (the shift, or None), sack, timestamps."""
    out = subprocess.run(["tshark", "-n", "-r", str(path), "-Y", "tcp.flags.syn==1",
                          "-T", "fields", "-e", "frame.time_epoch", "-e", "ip.src", "-e",
                          "tcp.srcport", "-e", "ip.dst", "-e", "tcp.dstport", "-e",
                          "tcp.flags.ack", "-e", "tcp.options.wscale.shift", "-e",
                          "tcp.options.sack_perm", "-e", "tcp.options.timestamp.tsval"],
                         capture_output=True, text=True, check=True).stdout
    seen = []
    for line in out.splitlines():
        t, sip, sport, dip, dport, ack, shift, sack, tsval = line.split("\t")
        seen.append({"t": float(t), "src": f"{sip}:{sport}", "dst": f"{dip}:{dport}",
                     "synack": ack in ("1", "True"), "wscale": int(shift) if shift else None,
                     "sack": bool(sack), "timestamps": bool(tsval)})
    return seen


def syn_cookies(ns: Namespace) -> None:
    """A listener (listen(4), serving each connection at once) that answers handshakes with
    SYN cookies. First, with net.ipv4.tcp_syncookies=1 (Linux's default: cookies only when
    the request queue is full), a client whose namespace has net.ipv4.tcp_timestamps=0
    connects twice: ordinary SYN-ACKs, with the window scale and SACK it offered. Then a
    flood: 6 SYNs from ports 50001-50006 whose SYN-ACKs the client's nftables drop (the
    listener keeps a request for each it queued, its SYN-ACK sent again; the listener's
    net.ipv4.tcp_synack_retries=2 ends them within about 8 s); the first 4 fill the request
    queue, the other 2 are answered with cookies; while the queue is full the client
    connects 3 times (cookies: the SYN-ACK has neither window scale nor SACK, as Linux makes
    a cookie for a client that sends no timestamps), then, with timestamps on, twice more
    (cookies too, their options encoded in the timestamp: nothing in the packets tells
    them). Once the flood's requests are gone, net.ipv4.tcp_syncookies=2 (a cookie for
    every SYN) and the client, timestamps off, connects twice. Each connection: a request
    line, a reply, the client closes first. Captured at the server."""
    client_ip, server_ip = SYN_COOKIES
    name = "syn_cookies"
    pcap = HERE / f"{name}.pcap"
    service = f"{server_ip}:80"
    first_flood, flood_n = SYN_COOKIES_FLOOD
    with Veth(ns, "syn-cookies-server", client_ip, server_ip) as far:
        far.sh("sysctl", "-q", "net.ipv4.tcp_synack_retries=2")
        nft = _drop(ns, f"ip saddr {server_ip} tcp dport {first_flood}-"
                        f"{first_flood + flood_n - 1}")
        server = far.peer("server", "serve", server_ip, "80", "60",
                          str(SYN_COOKIES_BACKLOG), wait_for="listening")
        server_out = _drain(server)
        far.start_capture(str(pcap), iface="f0")
        phases, flood, during = [], None, None
        first = _nstat(far)
        for phase, cookies, stamps, flooded, n in SYN_COOKIES_PLAN:
            far.sh("sysctl", "-q", f"net.ipv4.tcp_syncookies={cookies}")
            ns.sh("sysctl", "-q", f"net.ipv4.tcp_timestamps={stamps}")
            before = _nstat(far)
            if flooded and flood is None:
                flood = ns.peer("client", "flood", server_ip, "80", str(first_flood),
                                str(flood_n), "3")
                flood_out = _drain(flood)
                time.sleep(0.3)
            if not flooded and flood is not None:
                flood_log = _logged(flood_out, flood)
                for _ in range(100):  # the flood's requests given up: the queue empty
                    if "SYN-RECV" not in far.sh("ss", "-tanH", capture_output=True,
                                                text=True).stdout:
                        break
                    time.sleep(0.2)
                flood = None
                before = _nstat(far)
            start = time.time()
            client = ns.peer("client", "request", server_ip, "80", str(n), "0.2", "yes")
            client.wait(timeout=60)
            if flooded and during is None:
                during = _ss_during(far, ns)  # the flood's requests, the queue full
            time.sleep(0.3)
            phases.append({"phase": phase, "tcp_syncookies": _sysctl(far, "net.ipv4."
                                                                     "tcp_syncookies"),
                           "client_tcp_timestamps": _sysctl(ns, "net.ipv4.tcp_timestamps"),
                           "flood": flooded, "connections": n, "from": start,
                           "to": time.time(),
                           "nstat": _nstat_delta(before, _nstat(far), SYN_COOKIES_NSTAT)})
        time.sleep(2)  # past the flood's last SYN-ACK timer: the listener's give-ups due
        ns.run("client", "datagram", server_ip, "9")  # dates the capture's end
        total = _nstat_delta(first, _nstat(far), SYN_COOKIES_NSTAT)
        ss = _views(ns, far)
        far.stop_capture(HERE / f"{name}.ss.txt")
        server_log = _logged(server_out, server, timeout=90)
    (HERE / f"{name}.ss.txt").write_text(ss)
    _write_during(name, during)
    shakes = _handshake_options(pcap)
    syns = {x["src"]: x for x in reversed(shakes) if not x["synack"]}  # each one's first
    synacks: dict[str, list[dict]] = {}
    for x in shakes:
        if x["synack"]:
            synacks.setdefault(x["dst"], []).append(x)
    flood_ports = {f"{client_ip}:{first_flood + k}" for k in range(flood_n)}
    queued = {ln.split()[4] for ln in during.split("# netns=")[1].splitlines()
              if ln.startswith("SYN-RECV")}
    assert queued and queued < flood_ports, during  # the flood's first: the queue full
    listener = next(ln.split() for ln in during.splitlines() if ln.startswith("LISTEN"))
    assert listener[2] == str(SYN_COOKIES_BACKLOG), listener
    # which SYN-ACKs were cookies, by the scenario: every one to a flood SYN the queue had
    # no room for, and to the client's connections while the flood held it, or with
    # tcp_syncookies=2
    by_phase = {}
    for ph in phases:
        for client, x in syns.items():
            if client not in flood_ports and ph["from"] <= x["t"] <= ph["to"]:
                by_phase[client] = ph
    assert sorted(by_phase) == sorted(set(syns) - flood_ports), by_phase
    assert len(by_phase) == sum(ph["connections"] for ph in phases)
    cookie = {c for c, ph in by_phase.items() if ph["flood"] or ph["tcp_syncookies"] == 2}
    cookie |= flood_ports - queued
    cookie_synacks = sum(len(synacks[c]) for c in cookie)
    assert total["TcpExtSyncookiesSent"] == cookie_synacks, (total, cookie_synacks)
    assert total["TcpExtSyncookiesRecv"] == len(cookie - flood_ports), total
    assert total["TcpExtSyncookiesFailed"] == total["TcpExtListenOverflows"] == 0, total
    # what the packets show: a cookie answering a SYN without timestamps carries neither
    # window scale nor SACK; every other SYN-ACK keeps the options offered
    for c, x in syns.items():
        offered = (x["wscale"] is not None, x["sack"], x["timestamps"])
        assert offered[:2] == (True, True), x
        for y in synacks[c]:
            kept = (y["wscale"] is not None, y["sack"], y["timestamps"])
            assert kept == ((False, False, False) if c in cookie and not offered[2]
                            else offered) or (c in flood_ports and y["timestamps"]), (x, y)
    told = sorted(c for c in cookie if not syns[c]["timestamps"])
    hidden = sorted(c for c in cookie if syns[c]["timestamps"])
    assert hidden and told, (told, hidden)
    assert ss_states(ss) == {"TIME-WAIT": len(by_phase)}, ss
    gone = [e for e in server_log if e["event"] == "stopped"]
    assert gone and gone[0]["accepted"] == len(by_phase), server_log
    convs = _tshark_conversations(pcap)
    assert convs == len(syns) == len(by_phase) + flood_n
    final = {x["t"]: ({"client": "CLOSED", "server": "CLOSED"} if c in flood_ports else
                      {"client": "TIME_WAIT", "server": "CLOSED"}) for c, x in syns.items()}
    write_expected(
        name,
        description=syn_cookies.__doc__.split("\n\n")[0].replace("\n", " "),
        connections=len(syns),
        end_kinds={"closed": len(by_phase), "handshake_incomplete": flood_n},
        closers={"client": len(by_phase), "none": flood_n}, stuck=[],
        final_states=[final[t] for t in sorted(final)],
        diagnoses=[{"name": "accept_queue_overflow", "service": service, "side": "server",
                    "count": len(told), "how": "syn_cookie"},
                   {"name": "handshake_timeout", "service": service, "side": "client",
                    "count": flood_n},
                   {"name": "handshake_timeout", "service": service, "side": "server",
                    "count": flood_n}],
        not_diagnosed=[{"name": "accept_queue_overflow", "client": c} for c in hidden],
        syn_cookies={"told_by_the_packets": told, "hidden_in_timestamps": hidden,
                     "flood_queued": sorted(queued), "syn_acks_that_were_cookies":
                     cookie_synacks},
        phases=phases, nstat=total, flood_log=flood_log, server_log=server_log, nft=nft,
        notes="Which SYN-ACKs were cookies comes from the scenario: those answering the flood's "
              f"SYNs the request queue had no room for ({', '.join(sorted(flood_ports - queued))}"
              f"; the kernel's socket list during the flood, {name}.ss-during.txt, shows the "
              f"other {len(queued)} in SYN-RECV and the listener's backlog "
              f"{SYN_COOKIES_BACKLOG}), and the client's connections made while the flood "
              "held the queue full or with tcp_syncookies=2. Their SYN-ACKs number "
              f"{cookie_synacks} in the capture (tshark), as the kernel's "
              f"TcpExtSyncookiesSent counted ({total['TcpExtSyncookiesSent']}); "
              f"TcpExtSyncookiesRecv {total['TcpExtSyncookiesRecv']}: the cookies of the "
              "completed handshakes, each checked by the kernel. tshark shows every cookie "
              "answering a SYN without timestamps with neither window scale nor SACK "
              f"({len(told)} connections: the diagnosis), every other SYN-ACK with the options "
              f"offered; the {len(hidden)} cookies answering SYNs with timestamps keep them (Linux "
              "encodes them in the timestamp): nothing in the packets tells them, and "
              "pcapstate does not count them. The flood's 6 handshakes never complete: its "
              "process closes the sockets after 3 s (the SYNs sent 3 times: handshake_timeout "
              "on the client side, inferred from the backoff); the listener gives up each of "
              "the queued requests after net.ipv4.tcp_synack_retries=2 (SYN-ACK sent 3 "
              "times; no SYN-RECV left at the end), and answered the others' SYNs 3 times "
              "with a cookie: handshake_timeout on the server side for all 6. Capture "
              + _kib(pcap))


SCENARIOS = {f.__name__: f for f in (close_wait_leak, idle_leak, syn_timeout, close_wait_reset,
                                     client_close, server_close, rst_abort,
                                     refused, half_close, mid_stream, ipv6, pcapng, rotated,
                                     vantage, lossy, vxlan, syn_giveup, synack_giveup,
                                     late_leak, aborts, keepalive_race, peer_gone,
                                     unread_close, syn_retransmitted,
                                     accept_queue_overflow, zero_window_stall,
                                     time_wait_pressure, refused_burst,
                                     syn_cookies)}


def main(names: list[str]) -> None:
    for name in names or SCENARIOS:
        print(f"{name} ...", flush=True)
        with Namespace(name) as ns:
            SCENARIOS[name](ns)


if __name__ == "__main__":
    main(sys.argv[1:])
