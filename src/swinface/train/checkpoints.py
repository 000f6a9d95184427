"""Training checkpoints on disk: one folder per saved step, trusted only once complete.

Each rank writes its files (`state_rank<r>.pt`, `partial_fc_rank<r>.safetensors`)
and rank 0 the model, each through `swinface.atomic`; after every rank is done,
rank 0 writes `checkpoint.json`, naming every file with its size, and only then
moves the `latest` pointer. A folder without a valid manifest is incomplete,
and a run never resumes from it, nor silently starts again from step 0 when
checkpoints exist but the pointer is missing or broken.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from swinface.atomic import atomic_write_text
from swinface.errors import SwinFaceError

log = logging.getLogger(__name__)

MANIFEST = "checkpoint.json"
POINTER = "latest"
_NAME = re.compile(r"step_(\d+)")


class ResumeError(SwinFaceError, RuntimeError):
    """A run folder whose checkpoints cannot be resumed, and why."""


def checkpoint_name(step: int) -> str:
    return f"step_{step:07d}"


def write_manifest(folder: Path, step: int, world_size: int, files: list[str]) -> None:
    """Mark `folder` complete: every file of the checkpoint, with its size."""
    manifest = {
        "step": step,
        "world_size": world_size,
        "files": {name: (folder / name).stat().st_size for name in sorted(files)},
    }
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=1))


def read_manifest(folder: Path) -> dict:
    """The manifest of a complete checkpoint; ResumeError saying what is wrong otherwise."""
    problem = checkpoint_problem(folder)
    if problem is not None:
        raise ResumeError(f"{folder}: {problem}")
    return json.loads((folder / MANIFEST).read_text())


def checkpoint_problem(folder: Path) -> str | None:
    """None when `folder` is a complete checkpoint, else what is wrong with it."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return f"incomplete (no {MANIFEST})"
    except (OSError, ValueError) as err:
        return f"unreadable {MANIFEST} ({err})"
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not all(
        isinstance(manifest.get(k), int) for k in ("step", "world_size")
    ):
        return f"malformed {MANIFEST}"
    for name, size in files.items():
        file = folder / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != size:
            return f"{name} has {file.stat().st_size} bytes, {size} expected"
    return None


def _step_folders(checkpoints: Path) -> list[Path]:
    folders = [p for p in checkpoints.glob("step_*") if _NAME.fullmatch(p.name) and p.is_dir()]
    return sorted(folders, key=lambda p: int(_NAME.fullmatch(p.name).group(1)))


def resume_point(checkpoints: Path) -> Path | None:
    """The checkpoint a run in this folder continues from; None for a folder with none.

    The `latest` pointer names it. If the pointer is missing, unreadable or
    names an incomplete folder while checkpoints exist, the newest complete
    checkpoint is used, with a warning; if none is complete, ResumeError.
    """
    pointer = checkpoints / POINTER
    folders = _step_folders(checkpoints)
    if not folders and not pointer.exists():
        return None
    try:
        name = pointer.read_text().strip()
    except FileNotFoundError:
        problem = "is missing"
    except (OSError, UnicodeDecodeError) as err:
        problem = f"cannot be read ({err})"
    else:
        if not _NAME.fullmatch(name):
            problem = f"names {name!r}, not a checkpoint folder"
        else:
            target = checkpoints / name
            found = checkpoint_problem(target) if target.is_dir() else "missing"
            if found is None:
                return target
            problem = f"names {name}, which is {found}"
    complete = [f for f in folders if checkpoint_problem(f) is None]
    if complete:
        log.warning(
            "%s %s; resuming from the newest complete checkpoint, %s",
            pointer,
            problem,
            complete[-1].name,
        )
        return complete[-1]
    details = "; ".join(f"{f.name}: {checkpoint_problem(f)}" for f in folders[-3:]) or "none"
    raise ResumeError(
        f"{checkpoints}: cannot resume: the {POINTER!r} pointer {problem} and no checkpoint is "
        f"complete ({details}). To start afresh, use --no-resume or another output folder."
    )
