"""What machine and software produced a result: recorded in every run manifest."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import re
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import torch

from rdlib.paths import repo_root

#: tracked outputs, which do not make the code dirty: stored runs and errata, the executed book,
#: and the benchmarks' result rows (a benchmark appends to them beside a training run)
OUTPUT_PATHS = ("results", "book", "benchmarks/results")


def _git(root: Path, *args: str) -> str:
    """stdout of ``git args`` in ``root``; raises OSError or CalledProcessError."""
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                          check=True).stdout


def _code_pathspec() -> list[str]:
    """Pathspec of the code: the whole tree but :data:`OUTPUT_PATHS`."""
    return ["--", ".", *(f":(exclude){p}" for p in OUTPUT_PATHS)]


def _changed_code(root: Path) -> list[str]:
    """Tracked code files of ``root`` that differ from its commit (outputs and untracked files
    are not counted); raises OSError or CalledProcessError where git cannot tell."""
    out = _git(root, "status", "--porcelain", "--untracked-files=no", *_code_pathspec())
    return [line[3:] for line in out.splitlines() if line.strip()]


def code_changes() -> list[str]:
    """Tracked code files that differ from the commit (outputs and untracked files are not
    counted); empty where there is no git."""
    try:
        return _changed_code(repo_root())
    except (OSError, subprocess.CalledProcessError):
        return []


def git_state() -> dict[str, str | bool]:
    """Commit hash and whether the work tree had uncommitted changes (``dirty``).

    Only the code counts (:func:`code_changes`): tracked changes under :data:`OUTPUT_PATHS`
    leave the tree clean. A teacher retrained on a fresh clone appends to its stored manifest
    (:func:`rdlib.distill.ensure_teacher`), the book's pages are rewritten when it is
    re-executed and a benchmark appends its rows; a run started beside any of them still runs
    the committed code.

    A copy of the tree without ``.git`` (a GPU machine that receives the working tree) reads
    the commit from ``$RDLIB_GIT_COMMIT``, set by whoever sent the tree from a clean
    checkout; ``$RDLIB_GIT_DIRTY=1`` says it was not clean. Without either, the commit is
    ``"unknown"`` and the tree counts as dirty.
    """
    root = repo_root()
    if not (root / ".git").exists() and os.environ.get("RDLIB_GIT_COMMIT"):
        return {"commit": os.environ["RDLIB_GIT_COMMIT"],
                "dirty": os.environ.get("RDLIB_GIT_DIRTY", "0") != "0"}
    try:
        commit = _git(root, "rev-parse", "HEAD").strip()
        dirty = bool(_changed_code(root))
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "dirty": True}
    return {"commit": commit, "dirty": dirty}


def next_code_commit(after: str) -> dict[str, str] | None:
    """The first commit on HEAD's history committed at or after the ISO time ``after`` that
    changes code (not :data:`OUTPUT_PATHS`): ``{"commit": 10 hex digits, "committed_at": ISO,
    "paths": the code files it changed, comma-separated}``, or None when there is none or no git
    history (a shallow or ``.git``-less copy).

    For a run recorded as dirty it names the code edit that was most likely in progress when
    the run started (the provenance page lists them)."""
    try:
        out = _git(repo_root(), "log", "--reverse", f"--since={after}", "--name-only",
                   "--format=%x00%H %cI", *_code_pathspec())
    except (OSError, subprocess.CalledProcessError):
        return None
    entries = out.split("\0")[1:]  # one per commit: "hash time\n\npath\npath..."
    if not entries:
        return None
    head, *paths = entries[0].strip().splitlines()  # --since keeps commits at or after `after`
    commit, committed_at = head.split()
    return {"commit": commit[:10], "committed_at": committed_at,
            "paths": ", ".join(p for p in paths if p)}


@functools.cache
def code_git_state() -> dict[str, str | bool]:
    """:func:`git_state` as it was when this process first asked, which :mod:`rdlib.experiments`
    does as it is imported.

    A process that trains several runs in turn (``rdlib run derrd``, a notebook) runs the code
    it imported, for hours; a commit made meanwhile is not the code of its later runs, so their
    manifests must not record it.
    """
    return git_state()


class UncommittedCode(RuntimeError):
    """Training was asked for while the code differs from its commit
    (:func:`require_committed_code`)."""


def require_committed_code(override: str) -> None:
    """Refuse to train on uncommitted code: raise :class:`UncommittedCode` when
    :func:`code_git_state` (what this process imported, and what its runs will record) says
    dirty, naming the changed files (at most 5) and the commit, and ``override``, how the caller
    trains anyway (``"pass --allow-dirty"``, ``"pass -p allow_dirty True"``).

    A manifest records the commit and whether the code differed from it (``git.dirty``), not
    the difference itself, so a run trained on uncommitted code cannot be traced to its code
    (the provenance page lists the stored runs that were: a queue started them while code was
    being edited in the same checkout)."""
    state = code_git_state()
    if not state["dirty"]:
        return
    changed = code_changes()
    shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
    raise UncommittedCode(
        f"the code differs from commit {str(state['commit'])[:10]} ("
        f"{shown or 'RDLIB_GIT_DIRTY or a missing .git says so'}): a run records only its "
        f"commit, so commit or stash the change first, or {override} to train anyway with the "
        f"run marked dirty")


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model, e.g. ``AMD EPYC (family 23, model 1)``, from ``/proc/cpuinfo``.

    Seconds per epoch are only comparable on the same CPU: a dense CiteULike/NeuMF DE epoch
    took about 100 s on one of this project's 2-core machines and about 390 s on another (this
    one: "AMD EPYC", family 23, model 1). A virtual machine's model name can be that generic,
    so the family and model numbers, which tell the generations apart, are kept beside it.
    ``cpuinfo`` is the file's text (for tests); without ``/proc/cpuinfo`` (macOS, Windows) the
    answer is :func:`platform.processor`, or ``"unknown CPU"``.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return platform.processor() or "unknown CPU"
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            break  # the first processor's block is enough
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or "unknown CPU"
    numbers = [f"{k} {fields[f]}" for f, k in (("cpu family", "family"), ("model", "model"))
               if fields.get(f)]
    return f"{name} ({', '.join(numbers)})" if numbers else name


def device_name(device: str | torch.device) -> str:
    """Human-readable device, e.g. ``NVIDIA H100 80GB HBM3`` or
    ``cpu (AMD EPYC (family 23, model 1), AVX2, x86_64, 2 threads)``: on a CPU, its model
    (:func:`cpu_model`), the widest vector instructions torch uses, the architecture and the
    torch threads, since each changes the seconds a run takes."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return (f"cpu ({cpu_model()}, {torch.backends.cpu.get_cpu_capability()}, "
            f"{platform.machine()}, {torch.get_num_threads()} threads)")


def short_device_name(name: str) -> str:
    """The part of a :func:`device_name` that tells machines apart, for narrow tables:
    ``cpu (AMD EPYC (family 25, model 17), AVX512, x86_64, 1 threads)`` → ``AMD EPYC (family 25,
    model 17)``; an older name without the CPU model (``cpu (x86_64, 2 threads)``) → ``CPU (model
    not recorded)``; a GPU's name as it is."""
    if not name.startswith("cpu ("):
        return name
    model = re.match(r"cpu \((.+?\(family [^)]*\))", name)
    return model.group(1) if model else "CPU (model not recorded)"


def versions() -> dict[str, str]:
    """Versions of Python and the libraries that can change numbers."""
    out = {"python": sys.version.split()[0], "torch": torch.__version__,
           "cuda": str(torch.version.cuda)}
    for pkg in ("numpy", "pandas", "scipy", "rdlib"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def flush_denormal_enabled() -> bool:
    """Whether this thread's CPU flushes denormal floats to zero (``torch.set_flush_denormal``).

    Read off the hardware rather than remembered: a float32 denormal (1e-39) times one is 0
    when flushing is on."""
    tiny = torch.full((1,), 1e-39, dtype=torch.float32)  # below float32's 1.18e-38: denormal
    return float((tiny * 1.0)[0]) == 0.0


def set_flush_denormal(enabled: bool) -> None:
    """Flush denormal floats to zero on this thread's CPU from now on (``enabled``), or stop.

    ``torch.set_flush_denormal`` only returns False where the CPU cannot (no SSE3); a run asked
    to flush must not then train with denormals unnoticed, so this raises instead.
    """
    if not torch.set_flush_denormal(enabled) and enabled:
        raise RuntimeError("this CPU cannot flush denormals to zero "
                           "(torch.set_flush_denormal needs SSE3)")


@contextlib.contextmanager
def denormals_flushed(enabled: bool) -> Iterator[None]:
    """Flush denormal floats to zero inside the block if ``enabled``, else keep them; then give
    this thread back the setting it had.

    A run repeats another bit for bit only with the same setting (:func:`determinism_flags`),
    so code that must repeat a stored run sets that run's value here, whatever the process set.
    """
    before = flush_denormal_enabled()
    set_flush_denormal(enabled)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


#: glibc's ``mallopt`` parameters (``malloc.h``) and the value :func:`keep_freed_memory` sets
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
HEAP_THRESHOLD = 1 << 30  # 1 GiB


# what keep_freed_memory records: glibc's default kept on request, and its own setting
ALLOCATOR_DEFAULT = "default (RDLIB_MALLOC_DEFAULT=1)"
ALLOCATOR_KEPT = "glibc, mmap and trim thresholds 1 GiB"


@functools.cache
def keep_freed_memory() -> str:
    """Make glibc's ``malloc`` serve blocks up to 1 GiB from its heap and keep freed memory
    there, instead of mapping each large block from the kernel and unmapping it when freed;
    return what this process's allocator does, for the manifest (``allocator``).

    A CPU training step allocates and frees the same large tensors every batch (DE's dense
    experts: a 2,600 × 3,300 float32 hidden layer, 34 MB, above glibc's 32 MiB cap on its
    self-adjusting threshold), so by default each is a fresh ``mmap`` whose pages the kernel
    zero-fills on first touch: on an AMD EPYC (family 25, model 1) a third of a dense DE
    step's CPU time was spent in the kernel (``benchmarks/bench_allocator.py``). Where the
    memory comes from changes no number: torch aligns every CPU tensor to 64 bytes either
    way; the benchmark checks that both allocators end with the same weights, and a stored
    run rerun with it (``rdlib rerun --at``) repeated bit for bit. Applied
    once per process, where the C library is glibc (``mallopt``); elsewhere it says so and
    does nothing. ``RDLIB_MALLOC_DEFAULT=1`` keeps the default, for comparison."""
    if os.environ.get("RDLIB_MALLOC_DEFAULT") == "1":
        return ALLOCATOR_DEFAULT
    if platform.libc_ver()[0] != "glibc":
        return "default (not glibc)"
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return "default (libc.so.6 not found)"
    done = [libc.mallopt(param, HEAP_THRESHOLD) == 1
            for param in (_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD)]
    if not all(done):
        return "default (mallopt refused)"
    return ALLOCATOR_KEPT


def determinism_flags() -> dict[str, bool]:
    """Flags that decide whether numbers are bit-reproducible: cuDNN and TF32 on GPUs, and
    ``flush_denormal`` on CPUs (a run with it on repeats only runs with it on, since values
    below 1.18e-38 become 0)."""
    return {
        "flush_denormal": flush_denormal_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
    }


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when available else ``cpu``; otherwise the value unchanged."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
