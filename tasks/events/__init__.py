"""Scope's lifecycle events: the envelope, the sources that read them, the per-run audit."""
