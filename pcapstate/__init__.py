"""pcapstate: what happened to every TCP connection in a capture.

The library the command line is thin over:

    import pcapstate

    result = pcapstate.analyze(["incident.pcap"])       # a rotated set: several files
    for finding in result["findings"]:                   # stuck endpoints, by service
        print(finding["state"], finding["service"], finding["count"])

`analyze` (pcapstate.pipeline.analyze) returns the result `pcapstate analyze --json` writes
(docs/json.md); it raises pcapstate.read.capture.CaptureError for an unreadable input.
"""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """`pcapstate.analyze`, imported when first used: `pcapstate --help` and `--version`
    load none of the engine."""
    if name == "analyze":
        from pcapstate.pipeline import analyze

        return analyze
    raise AttributeError(f"module 'pcapstate' has no attribute {name!r}")
