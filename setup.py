"""Maps the top-level folders into the one `diffvm` namespace (`interp/` -> `diffvm.interp`).

`diffvm` itself is an implicit namespace package: there is no root folder for it.
"""

from setuptools import find_packages, setup

TOP_LEVEL = ("interp", "memory", "programs", "tasks", "controllers")

package_dir = {}
for top in TOP_LEVEL:
    for pkg in [top, *(f"{top}.{sub}" for sub in find_packages(top))]:
        package_dir[f"diffvm.{pkg}"] = pkg.replace(".", "/")

setup(
    packages=list(package_dir),
    package_dir=package_dir,
    package_data={name: ["*.lark"] for name in package_dir},
)
