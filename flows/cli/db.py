"""`autolabel db`: schema status and migrations of the annotation database."""

import typer

from autolabel.flows.resources import database_url
from autolabel.flows.settings import load_settings
from autolabel.storage.db.engine import make_engine, schema_status, upgrade_to_head

db_app = typer.Typer(help="Annotation database schema.", no_args_is_help=True)


@db_app.command()
def upgrade() -> None:
    """Migrate the configured database to the newest schema."""
    url = database_url(load_settings())
    upgrade_to_head(url)
    typer.echo(f"{url.render_as_string(hide_password=True)}: schema at head")


@db_app.command()
def status() -> None:
    """Print the database's schema revision and the newest one."""
    url = database_url(load_settings())
    engine = make_engine(url)
    try:
        current, head = schema_status(engine)
    finally:
        engine.dispose()
    typer.echo(f"current: {current or '(empty)'}\nhead:    {head}")
    if current != head:
        raise typer.Exit(code=1)
