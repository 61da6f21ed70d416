"""The audit trail. ``record()`` is the one way in; see ``audit.trail``."""
