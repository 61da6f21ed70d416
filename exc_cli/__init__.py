"""The `exc` command: manage Excloud access keys from a terminal. Imports no Django."""
