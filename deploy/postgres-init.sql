-- Prefect keeps its own tables (and its own alembic_version) in a separate database.
CREATE DATABASE prefect OWNER autolabel;
