"""The Redis layout and its stores: the embedded server, index schema, exemplar and pool indexes, migrations."""
