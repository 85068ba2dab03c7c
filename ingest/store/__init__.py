"""PostgreSQL: schema, writer (COPY, staging, upsert, checkpoint), origin, lock, rows."""
