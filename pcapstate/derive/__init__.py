"""Derive: from the connections the tracker retires, the verdicts (end kind, closer,
vantage, stuck endpoints), the summary's aggregates and findings, the timeline, and the
records the outputs write."""
