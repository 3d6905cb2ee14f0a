"""PostgreSQL: the connection pool, errors by SQLSTATE, migrations, the embedded server."""
