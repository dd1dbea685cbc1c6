"""A wire with a delay: two TUN devices, every IP packet read from one written to the other
after DELAY seconds. make_samples.py moves the devices into two namespaces, so the peers
there talk over a path with a real round-trip time (this kernel has no netem qdisc).

    python3 wire.py NAME_A NAME_B DELAY SECONDS

Prints "ready" once both devices exist; stops by itself after SECONDS.
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


def main(a: str, b: str, delay: str, seconds: str) -> None:
    fa, fb = tun(a), tun(b)
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
            order += 1
            heapq.heappush(queue, (time.monotonic() + late, order, other[fd],
                                   os.read(fd, 65536)))


if __name__ == "__main__":
    main(*sys.argv[1:])
