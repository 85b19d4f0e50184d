"""Object stores, image decoding, the annotation database and file formats (no orchestration)."""
