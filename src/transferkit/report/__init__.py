"""Reports written from a run folder's files (never from in-memory state): report.md, and
report.html with its plots for runs and comparisons."""
from .markdown import write_markdown_report
from .render import render_report, write_compare_report, write_run_report

__all__ = ["render_report", "write_compare_report", "write_markdown_report", "write_run_report"]
