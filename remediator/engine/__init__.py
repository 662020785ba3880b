"""remediator's core: framework-free (no FastAPI here)."""
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent
#: The repository checkout (the lab, the tests); an installed wheel has none.
PROJECT_ROOT = _PACKAGE.parent
#: What remediator ships: the vetted catalog (playbooks/), runbooks/, policies/, inventory/ examples, evals/.
#: Package data in a wheel (remediator/shipped/, mapped by pyproject.toml), the repository's own folders in a checkout.
SHIPPED = _PACKAGE / "shipped" if (_PACKAGE / "shipped").is_dir() else PROJECT_ROOT
