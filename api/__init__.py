"""FastAPI application: routers, schemas, auth, SSE."""
