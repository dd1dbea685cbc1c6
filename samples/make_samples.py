"""Make the kernel sample captures: real traffic in network namespaces, captured inside them.

    sudo python3 samples/make_samples.py [NAME...]

For each scenario NAME it writes NAME.pcap (NAME.pcapng; NAME-N.pcap for the rotated set),
NAME.ss.txt, the kernel's own view (`ss -tanH` in the namespace, taken at the end of the
capture, before the capture stops and while every peer is idle), and NAME.expected.json, the
facts that follow from the scenario's design. Needs root, iproute2, tcpdump, dumpcap, ethtool
(and /dev/net/tun for the vantage scenario, the kernel's vxlan module for the vxlan one).
Traffic stays inside namespaces made here (their loopback, or the wire between two); every
peer ends by itself.
"""

import json
import re
import subprocess
import sys
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

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
        connections=2, end_kinds={"reset_by_client": 2}, closers={"none": 2}, stuck=[],
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
    """Two namespaces, `ns` (10.77.0.1, the client side) and a second one (10.77.0.2),
    joined by samples/wire.py: `delay` seconds each way, every `drop_every`th data segment
    from the client lost."""

    def __init__(self, ns: Namespace, name: str, delay: float, drop_every: int = 0) -> None:
        self.ns, self.name, self.delay, self.drop = ns, name, delay, drop_every

    def __enter__(self) -> Namespace:
        self.wire = subprocess.Popen([sys.executable, str(HERE / "wire.py"), "vc0", "vs0",
                                      str(self.delay), "60", str(self.drop)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.wire.stdout.readline().strip() == "ready"
        self.far = Namespace(self.name)
        far = self.far.__enter__()
        for side, dev, me, peer in ((self.ns, "vc0", "10.77.0.1", "10.77.0.2"),
                                    (far, "vs0", "10.77.0.2", "10.77.0.1")):
            subprocess.run(["ip", "link", "set", dev, "netns", side.name], check=True)
            side.sh("sysctl", "-q", f"net.ipv6.conf.{dev}.disable_ipv6=1")
            side.sh("ip", "addr", "add", me, "peer", peer, "dev", dev)
            side.sh("ip", "link", "set", dev, "up")
        return far

    def __exit__(self, *exc: object) -> None:
        self.far.__exit__(*exc)
        self.wire.kill()
        self.wire.wait()


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


SCENARIOS = {f.__name__: f for f in (close_wait_leak, idle_leak, syn_timeout, close_wait_reset,
                                     client_close, server_close, rst_abort,
                                     refused, half_close, mid_stream, ipv6, pcapng, rotated,
                                     vantage, lossy, vxlan)}


def main(names: list[str]) -> None:
    for name in names or SCENARIOS:
        print(f"{name} ...", flush=True)
        with Namespace(name) as ns:
            SCENARIOS[name](ns)


if __name__ == "__main__":
    main(sys.argv[1:])
