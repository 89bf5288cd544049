"""`charrnn sample` (being written)."""
