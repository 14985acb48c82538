"""bank_node."""
