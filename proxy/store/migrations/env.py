"""Alembic's environment for perfics: the caller (``proxy.store.connect.upgrade``) hands over an
open connection; nothing here reads a configuration file."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, version_table="perfics_schema_version")
with context.begin_transaction():
    context.run_migrations()
