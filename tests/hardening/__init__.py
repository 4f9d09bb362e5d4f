"""Reliability and security under load, faults and hostile input (docs/security.md states what these show).

CI runs reduced sizes; SD_WEBUI_HARDENING_FULL=1 runs the full sizes the figures in docs/security.md come from,
and SD_WEBUI_HARDENING_FIGURES=<file> appends each test's measured figures to that file as JSON lines.
"""
