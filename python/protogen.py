"""Generates the Python gRPC code of the hpo API from proto/hpo/v1/*.proto.

Used at build time by setup.py (the generated modules land in the built package as hpo/v1/*_pb2*.py),
and by examples/python/hpo_client.py when it runs from a source checkout without the installed package.
Not installed; standard library only.

Two generators, tried in order:
  1. protoc (Debian: protobuf-compiler) with grpc_python_plugin (protobuf-compiler-grpc): the same
     protoc and gRPC versions as the C++ build and as python3-protobuf / python3-grpcio;
  2. python3 -m grpc_tools.protoc (Debian: python3-grpc-tools; PyPI: grpcio-tools).
$HPO_PROTOC and $HPO_GRPC_PYTHON_PLUGIN override the paths of the first.
"""

import os
import shutil
import subprocess
import sys

PROTO_FILES = ("hpo/v1/study.proto", "hpo/v1/coordinator.proto")
GENERATED = ("hpo/v1/study_pb2.py", "hpo/v1/coordinator_pb2.py", "hpo/v1/coordinator_pb2_grpc.py")


class ProtogenError(RuntimeError):
    pass


def find_proto_dir(candidates):
    """The first directory of `candidates` (None entries skipped) that holds every file of PROTO_FILES."""
    tried = []
    for d in candidates:
        if not d:
            continue
        d = os.path.abspath(d)
        if all(os.path.isfile(os.path.join(d, f)) for f in PROTO_FILES):
            return d
        tried.append(d)
    raise ProtogenError("the hpo .proto files (hpo/v1/study.proto, hpo/v1/coordinator.proto) are in none of: "
                        + ", ".join(tried) + "; set HPO_PROTO_DIR to the repository's proto/ directory")


def _plugin():
    p = os.environ.get("HPO_GRPC_PYTHON_PLUGIN") or shutil.which("grpc_python_plugin") or \
        "/usr/bin/grpc_python_plugin"
    return p if os.access(p, os.X_OK) else None


def _grpc_tools_available():
    r = subprocess.run([sys.executable, "-c", "import grpc_tools.protoc"], capture_output=True)
    return r.returncode == 0


def generator():
    """A description of the generator that generate() will use (also part of cache keys)."""
    protoc = os.environ.get("HPO_PROTOC") or shutil.which("protoc")
    plugin = _plugin()
    if protoc and plugin:
        ver = subprocess.run([protoc, "--version"], capture_output=True, text=True).stdout.strip()
        return ("protoc", protoc, plugin, ver)
    if _grpc_tools_available():
        return ("grpc_tools", sys.executable, "", "")
    raise ProtogenError(
        "generating the hpo gRPC code needs protoc and the gRPC Python plugin (Debian: apt-get install "
        "protobuf-compiler protobuf-compiler-grpc) or grpc_tools (Debian: python3-grpc-tools)")


def generate(proto_dir, out_dir, with_pyi=True):
    """Writes hpo/v1/{study_pb2,coordinator_pb2,coordinator_pb2_grpc}.py (and .pyi stubs) under out_dir.

    The modules import each other as `hpo.v1.*`, the proto package, so out_dir/hpo must be (part of) the
    importable package `hpo`. Creates hpo/v1/__init__.py; hpo/__init__.py is left alone.
    """
    kind, exe, plugin, _ = generator()
    os.makedirs(out_dir, exist_ok=True)
    outs = [f"--python_out={out_dir}", f"--grpc_python_out={out_dir}"]
    if kind == "protoc":
        cmd = [exe, f"--plugin=protoc-gen-grpc_python={plugin}"]
        if with_pyi:
            outs.append(f"--pyi_out={out_dir}")  # protoc >= 3.20
    else:
        cmd = [exe, "-m", "grpc_tools.protoc"]
    cmd += ["-I", proto_dir, *outs, *PROTO_FILES]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 and with_pyi and kind == "protoc":  # an old protoc without --pyi_out
        return generate(proto_dir, out_dir, with_pyi=False)
    if r.returncode != 0:
        raise ProtogenError(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
    for f in GENERATED:
        if not os.path.isfile(os.path.join(out_dir, f)):
            raise ProtogenError(f"{' '.join(cmd)} did not write {f}")
    with open(os.path.join(out_dir, "hpo", "v1", "__init__.py"), "w") as f:
        f.write('"""Generated from proto/hpo/v1/*.proto at build time; do not edit."""\n')
    return cmd
