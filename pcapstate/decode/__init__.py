"""Decode: capture records into columns of TCP segments (decode.frames.Batch), by the
compiled decoder (frames.py) or by tshark's dissectors (tshark.py)."""
