"""The HTTP face of remediator: thin FastAPI routes over engine.service.Engine."""
