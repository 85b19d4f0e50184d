"""The annotation database: SQLAlchemy 2 tables, engine helpers, repository and bulk writers."""
