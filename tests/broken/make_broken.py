"""Write the broken captures of this folder, each from a good sample, and their expected
outcomes (expected.json): what pcapstate must do with a capture from a broken machine.

    python3 tests/broken/make_broken.py
"""

import gzip
import json
import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent
SAMPLES = HERE.parent.parent / "samples"


def pcap_record(ts: int, data: bytes, incl: int | None = None, orig: int | None = None):
    n = len(data)
    return struct.pack("<IIII", ts, 0, n if incl is None else incl,
                       n if orig is None else orig) + data


def main() -> None:
    good = (SAMPLES / "client_close.pcap").read_bytes()  # 30 records, little-endian, us
    ng = (SAMPLES / "pcapng.pcapng").read_bytes()
    header, first = good[:24], good[24:24 + 16 + struct.unpack_from("<I", good, 32)[0]]
    backwards = bytearray(good)
    # the second record's timestamp one hour before the first's
    second = 24 + len(first)
    struct.pack_into("<I", backwards, second, struct.unpack_from("<I", good, 24)[0] - 3600)
    # a block of an unknown type (0x0BADB10C) after the section header
    shb_len = struct.unpack_from("<I", ng, 4)[0]
    unknown = struct.pack("<II", 0x0BADB10C, 16) + b"\x00" * 4 + struct.pack("<I", 16)
    # raw IPv4 (link type 101): a header length of 16 bytes, and a TCP data offset of 60
    # bytes in a 40-byte packet
    raw = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)
    ip = bytes([0x44, 0, 0, 40]) + bytes(4) + bytes([64, 6, 0, 0]) + bytes([10, 0, 0, 1]) \
        + bytes([10, 0, 0, 2])
    tcp_past_end = bytes([0x45, 0, 0, 40]) + ip[4:] + struct.pack(
        "!HHIIBBHHH", 40000, 80, 1, 0, 0xF0, 0x02, 512, 0, 0)
    cases = {
        "empty.pcap": (b"", {"exit": 2, "error": "empty file"}),
        "png.pcap": (b"\x89PNG\r\n\x1a\n" + bytes(100),
                     {"exit": 2, "error": "not a pcap or pcapng file"}),
        "short_header.pcap": (good[:10], {"exit": 2, "error": "inside the pcap file header"}),
        "cut_record.pcap": (good[:-7], {"exit": 0, "records": 29, "connections": 3,
                                        "warning": "capture ends in the middle of a record; "
                                                   "29 records read before it"}),
        "huge_record.pcap": (header + pcap_record(1, b"x" * 100, incl=0x7FFFFFFF),
                             {"exit": 2, "error": "record claims 2,147,483,647 bytes"}),
        "huge_record_later.pcap": (good + pcap_record(1, b"x" * 100, incl=0x7FFFFFFF),
                                   {"exit": 0, "records": 30, "connections": 3,
                                    "warning": "record claims 2,147,483,647 bytes"}),
        "orig_smaller_than_incl.pcap": (header + first[:8] + struct.pack(
            "<II", len(first) - 16, 10) + first[16:] + good[24 + len(first):],
            {"exit": 0, "records": 30, "connections": 3,
             "warning": "1 record whose original length is below its captured length"}),
        "longer_than_snaplen.pcap": (header[:16] + struct.pack("<I", 64) + header[20:]
                                     + good[24:],
                                     {"exit": 0, "records": 30, "connections": 3,
                                      "warning": "records longer than the file's snaplen "
                                                 "(64 bytes)"}),
        # found by fuzz/fuzz_capture.py: a gzip stream corrupt from its first block
        "gzip_corrupt.pcap.gz": (gzip.compress(good)[:10] + bytes([0xFF] * 64),
                                 {"exit": 2, "error": "corrupt gzip data"}),
        "gzip_cut.pcap.gz": (gzip.compress(good)[:400],
                             {"exit": 0, "warning": "gzip stream ends early"}),
        "backwards.pcap": (bytes(backwards),
                           {"exit": 0, "records": 30, "connections": 3,
                            "anomalies": {"timestamp_backwards": 1}}),
        "pcapng_bad_length.pcapng": (ng[:4] + struct.pack("<I", 7) + ng[8:],
                                     {"exit": 2, "error": "corrupt pcapng block"}),
        "pcapng_unknown_block.pcapng": (ng[:shb_len] + unknown + ng[shb_len:],
                                        {"exit": 0, "records": 22, "connections": 2}),
        "bad_headers.pcap": (raw + pcap_record(1, ip + bytes(20)) + pcap_record(2, tcp_past_end),
                             {"exit": 0, "records": 2, "connections": 0,
                              "undecodable": {"ipv4_header": 1, "tcp_data_offset": 1},
                              "warning": "2 of 2 records (100.0%) were not decoded (ipv4 "
                                         "header 1, tcp data offset 1)"}),
    }
    expected = {}
    for name, (data, outcome) in cases.items():
        (HERE / name).write_bytes(data)
        expected[name] = outcome
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    main()
