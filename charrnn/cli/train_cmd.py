"""`charrnn train` (being written)."""
