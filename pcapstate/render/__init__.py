"""Render: the result as people and tools read it: the terminal summary (text.py), the
Markdown and HTML report with its charts (report.py, charts.py), Zeek's conn.log
(zeeklog.py); output.py writes every file whole or not at all."""
