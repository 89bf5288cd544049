"""`charrnn info` (being written)."""
