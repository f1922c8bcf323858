"""Reference solutions of the course, importable as ordinary modules (no work happens at import time)."""
