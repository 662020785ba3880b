"""The SQL store, its migrations, the audit chain and the read models."""
