"""The `hpo` Python package: a typed client and a worker loop for the hpo coordinator.

    python3 -m venv --system-site-packages .venv && .venv/bin/pip install ./python

There is deliberately no pyproject.toml: without one, Debian's pip (23.0) builds with the setuptools and
wheel already installed (python3-setuptools, python3-wheel) instead of fetching them from PyPI into an
isolated build environment, so the install works offline.

The gRPC code is generated here, at build time (build_py), from the API's .proto files into the built
package as hpo/v1/*_pb2*.py. The .proto files are looked up in this order:
  1. $HPO_PROTO_DIR;
  2. proto/ next to this file (an sdist carries a copy there);
  3. ../proto, the repository's own proto/ directory (the usual case: pip install ./python from a checkout).
"""

import importlib.util
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = os.path.dirname(os.path.abspath(__file__))


def _protogen():
    spec = importlib.util.spec_from_file_location("hpo_protogen", os.path.join(HERE, "protogen.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _proto_dir(pg):
    return pg.find_proto_dir([os.environ.get("HPO_PROTO_DIR"), os.path.join(HERE, "proto"),
                              os.path.join(HERE, "..", "proto")])


class BuildPyWithProtos(build_py):
    """build_py, then the gRPC code generated from the .proto files into the build directory."""

    def run(self):
        super().run()
        pg = _protogen()
        proto_dir = _proto_dir(pg)
        cmd = pg.generate(proto_dir, self.build_lib)
        self.announce(f"generated the hpo gRPC code: {' '.join(cmd)}", level=2)


class SdistWithProtos(sdist):
    """An sdist that carries the .proto files (as proto/), so it builds away from the repository."""

    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        src = _proto_dir(_protogen())
        for f in _protogen().PROTO_FILES:
            dst = os.path.join(base_dir, "proto", f)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(os.path.join(src, f), dst)


setup(
    name="hpo",
    version="0.1.0",
    description="Client and Python worker for the hpo hyperparameter-search coordinator",
    long_description=__doc__,
    long_description_content_type="text/plain",
    license="see the hpo repository",
    python_requires=">=3.9",
    packages=["hpo"],  # hpo.v1 (generated) is added by build_py
    package_data={"hpo": ["py.typed"]},
    install_requires=["grpcio>=1.32", "protobuf>=3.20"],
    cmdclass={"build_py": BuildPyWithProtos, "sdist": SdistWithProtos},
    zip_safe=False,
)
