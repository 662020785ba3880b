"""The one thing pyproject.toml cannot declare: the repository's catalog and defaults shipped inside the package.

playbooks/, runbooks/, policies/, inventory/, evals/, packaging/ and docs/ stay where the lab, Molecule and ansible-lint expect them;
a wheel carries copies as remediator/shipped/ (found by `SHIPPED`, remediator/engine/__init__.py).
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = ("playbooks", "runbooks", "policies", "inventory", "evals", "packaging", "docs")


class BuildPyWithShipped(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:   # an editable install reads the checkout's own folders
            return
        for name in SHIPPED:
            shutil.copytree(Path(name), Path(self.build_lib) / "remediator" / "shipped" / name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".molecule"))


setup(cmdclass={"build_py": BuildPyWithShipped})
