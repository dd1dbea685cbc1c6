"""The script a user would write first: dpkt's Reader, a full Ethernet parse, a dict per flow.

    python3 bench/naive_dpkt.py CAPTURE
"""

import sys

import dpkt


def main(path: str) -> None:
    flows: dict[tuple, list[int]] = {}
    with open(path, "rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            if not isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6):
                continue
            tcp = ip.data
            if not isinstance(tcp, dpkt.tcp.TCP):
                continue
            a, b = (ip.src, tcp.sport), (ip.dst, tcp.dport)
            key = (a, b) if a < b else (b, a)
            counts = flows.get(key)
            if counts is None:
                counts = flows[key] = [0, 0, 0, 0]
            counts[0] += 1
            counts[1] += bool(tcp.flags & dpkt.tcp.TH_SYN)
            counts[2] += bool(tcp.flags & dpkt.tcp.TH_FIN)
            counts[3] += bool(tcp.flags & dpkt.tcp.TH_RST)
    print(f"{len(flows)} flows")


if __name__ == "__main__":
    main(sys.argv[1])
