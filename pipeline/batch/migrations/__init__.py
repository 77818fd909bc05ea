"""Alembic migrations of the results store (run by `pipeline.batch.store.Store.open`)."""
