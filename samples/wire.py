"""A wire with a delay: two TUN devices, every IP packet read from one written to the other
after DELAY seconds. make_samples.py moves the devices into two namespaces, so the peers
there talk over a path with a real round-trip time (this kernel has no netem qdisc).

    python3 wire.py NAME_A NAME_B DELAY SECONDS [DROP_EVERY]

Prints "ready" once both devices exist; stops by itself after SECONDS. With DROP_EVERY N,
every Nth IPv4 TCP segment carrying data from A to B is lost on the way, so the kernels
retransmit (losses of their own choosing, as a real path makes them).
"""

import fcntl
import heapq
import os
import select
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000


def tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def carries_data(packet: bytes) -> bool:
    """An IPv4 TCP segment with a payload."""
    if len(packet) < 40 or packet[0] >> 4 != 4 or packet[9] != 6:
        return False
    ihl = (packet[0] & 0x0F) * 4
    total = int.from_bytes(packet[2:4], "big")
    return total - ihl - (packet[ihl + 12] >> 4) * 4 > 0


def main(a: str, b: str, delay: str, seconds: str, drop_every: str = "0") -> None:
    fa, fb = tun(a), tun(b)
    every, data_seen = int(drop_every), 0
    other = {fa: fb, fb: fa}
    late = float(delay)
    stop = time.monotonic() + float(seconds)
    queue: list[tuple[float, int, int, bytes]] = []  # (due, order, fd to write, packet)
    order = 0
    print("ready", flush=True)
    while (now := time.monotonic()) < stop:
        while queue and queue[0][0] <= now:
            _, _, fd, packet = heapq.heappop(queue)
            os.write(fd, packet)
        wait = min(queue[0][0] - now if queue else 0.1, stop - now)
        ready, _, _ = select.select([fa, fb], [], [], max(wait, 0.0))
        for fd in ready:
            packet = os.read(fd, 65536)
            if every and fd == fa and carries_data(packet):
                data_seen += 1
                if data_seen % every == 0:
                    continue  # lost
            order += 1
            heapq.heappush(queue, (time.monotonic() + late, order, other[fd], packet))


if __name__ == "__main__":
    main(*sys.argv[1:])
