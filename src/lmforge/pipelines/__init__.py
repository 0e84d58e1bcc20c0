"""``lmforge pipeline`` (stages with content caching) and ``lmforge runs`` (lineage views)."""
