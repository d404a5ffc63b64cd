"""Alembic environment: runs on the connection the Store hands over (see store.upgrade)."""

from alembic import context

from jupyter_sessions.store import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
