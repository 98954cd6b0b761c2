"""Media helpers: PyAV probing and cheap frame sampling."""
