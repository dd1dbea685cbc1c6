"""--zeek-conn: a conn.log that Zeek's tools read, with Zeek's conn_state and history for
the kernel samples (the values Zeek's rules give; Zeek itself is not installed here)."""

import json
from collections import Counter
from pathlib import Path

import pytest

from pcapstate.cli import main
from pcapstate.zeeklog import FIELDS, TYPES

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def conn_log(tmp_path, sample, *extra):
    out = tmp_path / "conn.log"
    assert main(["analyze", str(SAMPLES / sample), "--zeek-conn", str(out), "-q", *extra]) == 0
    return out.read_text()


def rows(text):
    """conn.log entries by #fields name, as zeek-cut reads them."""
    lines = text.splitlines()
    fields = next(ln for ln in lines if ln.startswith("#fields\t")).split("\t")[1:]
    return [dict(zip(fields, ln.split("\t"), strict=True)) for ln in lines
            if not ln.startswith("#")]


def test_conn_log_format(tmp_path):
    text = conn_log(tmp_path, "refused.pcap")
    lines = text.splitlines()
    assert lines[:5] == ["#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)",
                         "#unset_field\t-", "#path\tconn"]
    assert lines[5].startswith("#open\t") and lines[-1].startswith("#close\t")
    assert lines[6] == "#fields\t" + "\t".join(FIELDS)
    assert lines[7] == "#types\t" + "\t".join(TYPES)
    entries = rows(text)
    assert [(e["conn_state"], e["history"]) for e in entries] == [
        ("REJ", "Sr"), ("REJ", "Sr"), ("SF", "ShADadFf")]
    first = entries[0]
    assert first["id.resp_p"] == "9999" and first["proto"] == "tcp"
    assert first["ts"].count(".") == 1 and len(first["ts"].split(".")[1]) == 6
    for unset in ("service", "local_orig", "local_resp", "missed_bytes", "tunnel_parents"):
        assert first[unset] == "-"
    # a SYN (20 + 20 bytes of headers + 20 of options) answered by a RST (40 bytes)
    assert (first["orig_pkts"], first["orig_ip_bytes"], first["resp_pkts"],
            first["resp_ip_bytes"]) == ("1", "60", "1", "40")
    assert len({e["uid"] for e in entries}) == 3 and all(e["uid"][0] == "C" for e in entries)
    assert [e["uid"] for e in rows(conn_log(tmp_path, "refused.pcap"))] == \
        [e["uid"] for e in entries]  # the same capture gives the same uids


@pytest.mark.parametrize(("sample", "expected"), [
    ("client_close.pcap", {("SF", "ShADadFf"): 3}),
    ("server_close.pcap", {("SF", "ShADadfF"): 3}),  # the responder's FIN first
    ("close_wait_leak.pcap", {("S2", "ShADaF"): 5}),  # Zeek has no CLOSE_WAIT: S2
    ("close_wait_reset.pcap", {("RSTO", "ShADaFdR"): 2}),
    ("rst_abort.pcap", {("RSTO", "ShADaR"): 2}),
    ("lossy.pcap", {("SF", "ShADaTFf"): 1}),  # T: payload sent again
    ("mid_stream.pcap", {("SF", "DdAFaf"): 1}),  # no SYN seen
])
def test_kernel_samples(tmp_path, sample, expected):
    got = Counter((e["conn_state"], e["history"]) for e in rows(conn_log(tmp_path, sample)))
    assert got == expected


def test_byte_and_packet_counts(tmp_path):
    e = rows(conn_log(tmp_path, "client_close.pcap"))[0]
    assert (e["orig_bytes"], e["resp_bytes"], e["orig_pkts"], e["resp_pkts"]) == \
        ("8", "301", "6", "4")  # an 8-byte request, a 301-byte reply
    assert float(e["duration"]) > 0


def test_json_lines_variant(tmp_path, capsys):
    assert main(["analyze", str(SAMPLES / "close_wait_leak.pcap"), "--zeek-conn-json", "-",
                 "-q"]) == 0
    entries = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert len(entries) == 5
    assert {(e["conn_state"], e["history"]) for e in entries} == {("S2", "ShADaF")}
    assert "service" not in entries[0] and entries[0]["id.resp_p"] == 5001


def test_two_outputs_cannot_share_standard_output(capsys):
    assert main(["analyze", str(SAMPLES / "refused.pcap"), "--zeek-conn", "-", "--json",
                 "-"]) == 2
    assert "cannot both write to standard output" in capsys.readouterr().err
