"""Fuzzing the GGUF reading of the importer (models/importer/gguf_to_onnx.py, `GGUFModel`).

A small valid llama GGUF is written with the `gguf` package, then mutated by a seeded loop:
bit flips, truncation, inserted and deleted bytes, and, structure-aware, huge values written
into the header's counts and the length fields of strings, arrays and tensor shapes (2^60,
2^64-1, ...). Every mutant must load or fail with a `gguf_to_onnx: ...` SystemExit: no other
exception, no hang, no allocation driven by a length field.

    FUZZ_SECONDS=N   run for N seconds instead of the fixed CI count (make fuzz)
    FUZZ_SEED=N      another seed
    FUZZ_CRASH_DIR   where a failing file is written (default $TMPDIR/tensoras-fuzz)

A failing file becomes a regression by copying it into tests/models/gguf_regressions/
(every file there is loaded on each run and must fail cleanly, or load).
"""
from __future__ import annotations

import os
import random
import signal
import struct
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
gguf = pytest.importorskip("gguf")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "models" / "importer"))
pytest.importorskip("onnx")
import gguf_to_onnx  # noqa: E402

REGRESSIONS = Path(__file__).with_name("gguf_regressions")
CI_ITERATIONS = 400
# A mutant is a few KiB: reading it must stay far below this (Python and numpy allocations).
PEAK_BYTES = 64 << 20
# One input that takes this long is a hang (a loop driven by a count field); the fix makes
# the work proportional to the file's size, which is milliseconds here.
HANG_SECONDS = 30

HUGE = [1 << 60, (1 << 64) - 1, 1 << 63, 1 << 32, (1 << 32) - 1, 1 << 31, 0xFFFF, 0]


def small_gguf(path: Path, vocab=16, hidden=8, layers=1):
    """A minimal llama GGUF: the metadata GGUFModel reads and a few tiny tensors."""
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(layers)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(2 * hidden)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_context_length(64)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    tokens = [f"t{i}" for i in range(vocab)]
    w.add_token_list(tokens)
    w.add_token_types([1] * vocab)
    w.add_token_merges(["t 1", "t 2"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}")
    w.add_name("fuzz")
    rng = np.random.default_rng(0)
    w.add_tensor("token_embd.weight", rng.standard_normal((vocab, hidden), dtype=np.float32))
    w.add_tensor("output_norm.weight", np.ones(hidden, dtype=np.float32))
    w.add_tensor("blk.0.attn_q.weight", rng.standard_normal((hidden, hidden), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def length_fields(data: bytes):
    """Offsets and widths of the header's counts and of every length field (string
    lengths, array counts, tensor dimension counts and dimensions) of a valid file."""
    fields = [(8, 8), (16, 8)]  # tensor_count, kv_count
    n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)
    at = 24
    scalar = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def string(at):
        fields.append((at, 8))
        (n,) = struct.unpack_from("<Q", data, at)
        return at + 8 + n

    def value(at, t):
        if t in scalar:
            return at + scalar[t]
        if t == 8:
            return string(at)
        item, count = struct.unpack_from("<IQ", data, at)
        fields.append((at, 4))
        fields.append((at + 4, 8))
        at += 12
        for _ in range(count):
            at = value(at, item)
        return at

    for _ in range(n_kv):
        at = string(at)
        (t,) = struct.unpack_from("<I", data, at)
        fields.append((at, 4))
        at = value(at + 4, t)
    for _ in range(n_tensors):
        at = string(at)
        (n_dims,) = struct.unpack_from("<I", data, at)
        fields.append((at, 4))
        at += 4
        for d in range(n_dims):
            fields.append((at + 8 * d, 8))
        at += 8 * n_dims
        fields.append((at, 4))  # type
        fields.append((at + 4, 8))  # data offset
        at += 12
    return fields


def mutate(rng: random.Random, data: bytes, fields) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(7)
        if kind <= 2 and fields:
            # A length or count field set to something huge, zero, or off by a little.
            at, width = rng.choice(fields)
            if at + width > len(b):
                continue
            old = int.from_bytes(b[at:at + width], "little")
            v = rng.choice(HUGE + [old + 1, max(old - 1, 0), old * 2, old + 1000])
            b[at:at + width] = (v % (1 << (8 * width))).to_bytes(width, "little")
        elif kind == 3 and b:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif kind == 4:
            del b[rng.randrange(len(b) + 1):]
        elif kind == 5:
            i = rng.randrange(len(b) + 1)
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.choice([1, 4, 8, 64])))
        elif b:
            i = rng.randrange(len(b))
            del b[i:i + rng.choice([1, 4, 8, 64])]
    return bytes(b)


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def check(path: Path):
    """Loads `path`; returns None when it loads or fails cleanly, else what went wrong."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_SECONDS)
    tracemalloc.start()
    try:
        gguf_to_onnx.GGUFModel(path)
    except SystemExit as e:
        if not str(e.code).startswith("gguf_to_onnx:"):
            return f"SystemExit without the importer's message: {e.code!r}"
    except Hang:
        return f"still reading after {HANG_SECONDS} s (a loop driven by a count field?)"
    except BaseException as e:  # noqa: BLE001 - anything else is the finding
        return f"{type(e).__name__}: {e}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    if peak > PEAK_BYTES:
        return f"allocated {peak >> 20} MiB reading a {path.stat().st_size}-byte file"
    return None


@pytest.fixture(scope="module")
def seed_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("gguf") / "small.gguf"
    small_gguf(p)
    return p


def test_the_seed_file_loads(seed_file):
    m = gguf_to_onnx.GGUFModel(seed_file)
    assert (m.n_layers, m.hidden, m.n_heads, m.n_kv_heads, m.vocab) == (1, 8, 2, 1, 16)
    assert "token_embd.weight" in m.tensors


def test_regressions_fail_cleanly(tmp_path):
    files = sorted(REGRESSIONS.glob("*.gguf"))
    assert files, f"no regression files in {REGRESSIONS}"
    for f in files:
        assert check(f) is None, (f.name, check(f))


def test_mutated_gguf_files_fail_cleanly(seed_file, tmp_path):
    data = seed_file.read_bytes()
    fields = length_fields(data)
    seed = int(os.environ.get("FUZZ_SEED", "17"))
    seconds = os.environ.get("FUZZ_SECONDS")
    deadline = time.monotonic() + float(seconds) if seconds else None
    rng = random.Random(seed)
    path = tmp_path / "mutant.gguf"
    i = 0
    while (time.monotonic() < deadline) if deadline else (i < CI_ITERATIONS):
        mutant = mutate(rng, data, fields)
        path.write_bytes(mutant)
        why = check(path)
        if why is not None:
            out = Path(os.environ.get("FUZZ_CRASH_DIR", Path(tempfile.gettempdir()) / "tensoras-fuzz"))
            out.mkdir(parents=True, exist_ok=True)
            kept = out / f"gguf-{seed}-{i}.gguf"
            kept.write_bytes(mutant)
            pytest.fail(f"mutant {i} (FUZZ_SEED={seed}): {why}; written to {kept} "
                        f"(copy it into {REGRESSIONS}/ to keep it as a regression)")
        i += 1
    print(f"gguf fuzz: {i} mutants, no failure (FUZZ_SEED={seed})")
