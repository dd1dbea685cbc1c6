"""Crafted captures for what a kernel will not produce on demand.

    python3 samples/make_crafted.py

Writes samples/crafted_*.pcap (Ethernet, IPv4) and an expected.json beside each, in the same
form as the kernel samples'. The expectations follow from the segments written here.
"""

import json
import struct
from pathlib import Path

import dpkt

HERE = Path(__file__).parent
CLIENT = (bytes([192, 0, 2, 10]), 41000)
SERVER = (bytes([192, 0, 2, 20]), 8080)
T0 = 1_700_000_000.0
F = {"S": dpkt.tcp.TH_SYN, "A": dpkt.tcp.TH_ACK, "F": dpkt.tcp.TH_FIN,
     "R": dpkt.tcp.TH_RST, "P": dpkt.tcp.TH_PUSH}


class Writer:
    """Writes one capture of segments between CLIENT and SERVER."""

    def __init__(self, name: str) -> None:
        self.path = HERE / f"{name}.pcap"
        self.f = open(self.path, "wb")  # noqa: SIM115
        self.w = dpkt.pcap.Writer(self.f, snaplen=262144, linktype=dpkt.pcap.DLT_EN10MB)
        self.ipid = 0

    def seg(self, t: float, direction: str, flags: str, seq: int, ack: int = 0,
            data: bytes = b"", client: tuple[bytes, int] = CLIENT) -> None:
        src, dst = (client, SERVER) if direction == ">" else (SERVER, client)
        opts = b"\x02\x04\x05\xb4\x01\x03\x03\x07" if "S" in flags else b""
        tcp = dpkt.tcp.TCP(sport=src[1], dport=dst[1], seq=seq & 0xFFFFFFFF,
                           ack=ack & 0xFFFFFFFF, flags=sum(F[c] for c in flags), win=512,
                           off=(20 + len(opts)) // 4, opts=opts, data=data)
        self.ipid += 1
        ip = dpkt.ip.IP(src=src[0], dst=dst[0], p=6, id=self.ipid, ttl=64, data=tcp)
        ip.len = len(ip)
        eth = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01" + struct.pack("!H", 0x0800)
        self.w.writepkt(eth + bytes(ip), T0 + t)

    def handshake(self, t: float, cisn: int, sisn: int, client=CLIENT) -> None:
        self.seg(t, ">", "S", cisn, client=client)
        self.seg(t + 0.001, "<", "SA", sisn, cisn + 1, client=client)
        self.seg(t + 0.002, ">", "A", cisn + 1, sisn + 1, client=client)

    def close(self, expected: dict) -> None:
        self.f.close()
        out = self.path.with_suffix(".expected.json")
        out.write_text(json.dumps(expected, indent=1) + "\n")


def simultaneous_close() -> None:
    w = Writer("crafted_simultaneous_close")
    w.handshake(0.0, 1000, 5000)
    w.seg(0.5, ">", "FA", 1001, 5001)
    w.seg(0.5005, "<", "FA", 5001, 1001)  # crosses the client's FIN: does not ack it
    w.seg(0.501, ">", "A", 1002, 5002)
    w.seg(0.5015, "<", "A", 5002, 1002)
    w.close({"description": "both sides send FIN before seeing the other's",
             "connections": 1, "end_kinds": {"closed": 1}, "closers": {"both": 1}, "stuck": [],
             "final_states": [{"client": "TIME_WAIT", "server": "TIME_WAIT"}],
             "notes": "crafted with dpkt; both endpoints pass through CLOSING"})


def wraparound() -> None:
    w = Writer("crafted_wraparound")
    cisn, sisn = 0xFFFFFF00, 0xFFFFFFF0
    w.handshake(0.0, cisn, sisn)
    c, s = cisn + 1, sisn + 1
    for i in range(4):  # 4 x 100 bytes each way: both sequence spaces cross 2**32
        w.seg(0.01 + i * 0.01, ">", "PA", c, s, b"c" * 100)
        c += 100
        w.seg(0.015 + i * 0.01, "<", "PA", s, c, b"s" * 100)
        s += 100
    w.seg(1.0, "<", "FA", s, c)
    w.seg(1.001, ">", "A", c, s + 1)
    w.seg(1.5, ">", "FA", c, s + 1)
    w.seg(1.501, "<", "A", s + 1, c + 1)
    w.close({"description": "sequence numbers of both sides wrap past 2**32 mid-connection",
             "connections": 1, "end_kinds": {"closed": 1}, "closers": {"server": 1},
             "stuck": [], "final_states": [{"client": "CLOSED", "server": "TIME_WAIT"}],
             "notes": "crafted with dpkt"})


def rst_out_of_window() -> None:
    w = Writer("crafted_rst_out_of_window")
    w.handshake(0.0, 1000, 5000)
    w.seg(0.1, ">", "PA", 1001, 5001, b"x" * 10)
    w.seg(0.2, "<", "A", 5001, 1011)
    w.seg(0.3, "<", "R", 5001 + 50_000_000)  # blind reset attempt far outside the window
    w.seg(0.4, ">", "PA", 1011, 5001, b"y" * 10)
    w.seg(0.5, "<", "A", 5001, 1021)
    w.seg(0.6, "<", "RA", 5001, 1021)  # the real, in-window reset
    w.close({"description": "a RST outside the window is ignored; a later in-window RST "
                            "ends the connection",
             "connections": 1, "end_kinds": {"reset_by_server": 1}, "closers": {"server": 1},
             "stuck": [], "diagnoses": [{
                 "name": "reset_with_data_loss", "service": "192.0.2.20:8080",
                 "side": "server", "count": 1, "bytes_lost": 20,
                 "why": "the client's two 10-byte segments, never answered, end in the "
                        "server's RST"}],
             "final_states": [{"client": "CLOSED", "server": "CLOSED"}],
             "anomalies": {"rst_out_of_window": 1}, "notes": "crafted with dpkt"})


def syn_on_time_wait() -> None:
    w = Writer("crafted_syn_on_time_wait")
    w.handshake(0.0, 1000, 5000)
    w.seg(0.5, ">", "FA", 1001, 5001)
    w.seg(0.501, "<", "FA", 5001, 1002)
    w.seg(0.502, ">", "A", 1002, 5002)
    # 2 s later, while the client's old socket is in TIME_WAIT, the same 4-tuple reconnects
    w.handshake(2.5, 900_000, 700_000)
    w.seg(3.0, ">", "FA", 900_001, 700_001)
    w.seg(3.001, "<", "FA", 700_001, 900_002)
    w.seg(3.002, ">", "A", 900_002, 700_002)
    w.close({"description": "a new SYN with a new ISN on a 4-tuple in TIME_WAIT is a new "
                            "connection", "connections": 2, "end_kinds": {"closed": 2},
             "closers": {"client": 2}, "stuck": [], "diagnoses": [{
                 "name": "time_wait_pressure", "service": "192.0.2.20:8080",
                 "side": "client", "count": 2,
                 "why": "the client closes both first; the second reuses the first's 4-tuple "
                        "while it is in TIME_WAIT"}],
             "final_states": [{"client": "CLOSED", "server": "CLOSED"},
                              {"client": "TIME_WAIT", "server": "CLOSED"}],
             "notes": "crafted with dpkt; the first connection's TIME_WAIT is cut short by "
                      "the reuse"})


if __name__ == "__main__":
    simultaneous_close()
    wraparound()
    rst_out_of_window()
    syn_on_time_wait()
