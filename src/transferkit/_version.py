"""The package version (a leaf: the exported files and the CLI read it without importing the rest)."""
__version__ = "0.2.0"
