"""Alembic migrations for the annotation database (see `autolabel.storage.db.engine`)."""
