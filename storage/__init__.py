"""Tables, engine/session setup, queries and migrations."""
