"""remediator's core: framework-free (no FastAPI here)."""
from pathlib import Path

#: The repository root: catalog, inventory, policies and runbooks live beside the package.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
