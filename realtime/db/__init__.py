"""PostgreSQL: the connection pools behind one interface, errors by SQLSTATE, migrations, the
embedded server."""
