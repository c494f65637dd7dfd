"""Reports written from a run folder's files (never from in-memory state)."""
from .markdown import write_markdown_report

__all__ = ["write_markdown_report"]
