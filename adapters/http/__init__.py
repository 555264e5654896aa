"""``movecar serve``: the engine over HTTP (an ASGI application, served by uvicorn)."""
