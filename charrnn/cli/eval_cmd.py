"""`charrnn eval` (being written)."""
