"""The package list and the package-dir mapping, computed (everything else: pyproject.toml).

The folders pipeline/, connectors/, projections/, api/ and schemas/ stay at the top of the
repository and install as ``millrace.<folder>``; ``millrace`` itself is an implicit
namespace package (no ``__init__.py``: a root-level one would make the repository root a
package for pytest and mypy). Every subpackage is found here, so a new folder with an
``__init__.py`` needs no edit.
"""

from setuptools import find_namespace_packages, setup

FOLDERS = ("pipeline", "connectors", "projections", "api", "schemas")  # not modules

setup(
    # namespace discovery, as [tool.setuptools.packages.find] did: data folders such as
    # projections/sql and schemas/history are packages of their own to setuptools
    packages=[
        f"millrace.{name}"
        for name in find_namespace_packages(
            include=[*FOLDERS, *(f"{f}.*" for f in FOLDERS)], exclude=["*__pycache__"]
        )
    ],
    package_dir={f"millrace.{f}": f for f in FOLDERS},
)
