"""The HTTP API (A1111's /sdapi/v1): FastAPI routes over the core. The only package besides the UI that imports
FastAPI; it holds no generation logic."""
