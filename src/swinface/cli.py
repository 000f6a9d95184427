"""The `swinface` command line: a thin layer over the library.

Arguments, devices, input and output paths are checked before torch or a
model is loaded, so a mistake is answered at once. Heavy modules are
imported inside the commands that need them.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from swinface.errors import SwinFaceError

log = logging.getLogger("swinface")

# Exit statuses, the same for every command (see EXIT_CODES_HELP).
EXIT_OK = 0
EXIT_FAILED = 1  # analyze: some photos could not be analysed; verify: different people
EXIT_ERROR = 2  # the command could not do its work: arguments, inputs, weights, device
EXIT_UNDECIDED = 3  # verify: similarity printed, no threshold to decide with
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # stdout closed early (e.g. `| head`), as for a process killed by SIGPIPE

EXIT_CODES_HELP = """\
exit status:
  0    success (verify: the same person)
  1    analyze: one or more photos could not be analysed (each has an "error" record);
       verify: different people
  2    error: bad arguments, missing input or weights, unavailable device ...
  3    verify: no threshold known for the weights; the similarity is printed without a decision
  130  interrupted
  141  stdout was closed early (e.g. piped into head)
"""


class CliError(SwinFaceError):
    """A mistake in the command line, found before any work."""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default (where it has a meaningful one) and keeps epilogs as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default = action.default
        if default is None or default is False or default is argparse.SUPPRESS:
            return action.help
        if "%(default)" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


# name -> (help, add_arguments, run), filled by the @command decorator below.
Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None]):
    """Register `run(args) -> exit status` as the subcommand `name`."""

    def register(run: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = (help, arguments, run)
        return run

    return register


def _status(message: str) -> None:
    from swinface.progress import status

    status(message)


# ---------------------------------------------------------------- checks before any work

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device_name(device: str) -> str:
    """Refuse a device name torch does not know (no torch needed); returns the name."""
    if not _DEVICE.match(device):
        raise CliError(f"--device {device}: unknown device; use auto, cpu, cuda, cuda:N or mps")
    return device


def check_device(device: str) -> str:
    """Refuse a device this machine lacks, before any model is loaded; returns the device."""
    check_device_name(device)
    if device in ("auto", "cpu"):
        return device  # no torch needed to know these work
    import torch

    if device == "mps":
        if not torch.backends.mps.is_available():
            raise CliError("--device mps: Apple's MPS is not available here; use --device cpu")
        return device
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "without CUDA"
        raise CliError(
            f"--device {device}: no CUDA device is available (torch {torch.__version__}, "
            f"built {build}); use --device cpu or auto"
        )
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise CliError(
            f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
            f"cuda:0 to cuda:{torch.cuda.device_count() - 1}"
        )
    return device


def _on_cpu(device: str) -> bool:
    if device == "cpu":
        return True
    if device != "auto":
        return False
    import torch

    return not torch.cuda.is_available()


def check_weights(weights: str | None):
    """What `--weights` names, checked without loading or fetching anything.

    Returns `(what to load, spec to download first or None)`: a file is taken
    as is, a folder gives its latest checkpoint, a name must be registered or
    imported; registered weights not cached yet come with their spec.
    """
    from swinface.weights import download as dl
    from swinface.weights import registry

    if weights is not None:
        path = Path(weights).expanduser()
        if path.is_file():
            return str(path), None
        if path.is_dir():
            return str(dl.latest_checkpoint(path)), None
        if weights in dl.list_imported():
            return weights, None
        try:
            spec = registry.get_spec(weights)
        except registry.WeightsError:
            if os.sep in weights or path.suffix in (".pt", ".pth", ".safetensors", ".bin"):
                raise CliError(f"--weights {weights}: no such file or folder") from None
            dl.resolve_weights(weights, download=False)  # raises, listing the known names
            raise
    else:
        spec = registry.get_spec(registry.default_weights())
    return spec.name, (None if dl.verify_cached(spec) is not None else spec)


def fetch_weights(checked, given: str | None) -> str:
    """Download the weights `check_weights` found missing, saying so first; returns the name."""
    name, spec = checked
    if spec is None:
        return name
    from swinface.weights import download as dl

    what = (
        f"the weights {spec.name!r}"
        if given is not None
        else f"no --weights given; the default weights {spec.name!r}"
    )
    if dl.is_shipped(spec):
        _status(f"{what} (shipped with swinface): unpacking them once into the cache")
    else:
        where = " or ".join(s.text for s in spec.sources)
        _status(f"{what} are not in the cache yet: downloading them once from {where}")
    dl.download(spec)  # its error lists the other ways to get them
    return name


def _is_shipped(spec) -> bool:
    from swinface.weights.download import is_shipped

    return is_shipped(spec)


def prepare_model(args: argparse.Namespace) -> str:
    """Every check a model command makes before loading: weights named, device, then fetch."""
    checked = check_weights(args.weights)
    check_device(args.device)
    return fetch_weights(checked, args.weights)


def weights_threshold(weights: str) -> float | None:
    """The verification threshold that travels with `weights`, read without loading them."""
    import json
    import struct

    from swinface.weights import registry

    path = Path(weights)
    if not path.is_file():
        try:
            spec = registry.get_spec(weights)
        except registry.WeightsError:
            from swinface.weights.download import list_imported

            path = list_imported().get(weights, path)
        else:
            if spec.verify_threshold is not None:
                return spec.verify_threshold
            path = registry.cached_path(spec)  # a threshold may travel in the file itself
    try:
        with open(path, "rb") as f:  # a safetensors header: 8-byte length, then JSON
            (length,) = struct.unpack("<Q", f.read(8))
            if length > 100_000_000:
                return None
            meta = json.loads(f.read(length)).get("__metadata__") or {}
        value = meta.get("verify_threshold")
        return float(value) if value else None
    except (OSError, ValueError, struct.error, AttributeError):
        return None  # a published .pt checkpoint: no threshold travels with it


def check_max_pixels(value: int | None) -> int | None:
    """`--max-pixels` as `load_image` takes it: 0 means no limit."""
    if value is None:
        from swinface.vision.image import DEFAULT_MAX_PIXELS

        return DEFAULT_MAX_PIXELS
    if value < 0:
        raise CliError(f"--max-pixels {value}: give a positive number of pixels, or 0 for no limit")
    return value or None


def _positive(name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise CliError(f"{name} {value}: must be positive")


# ---------------------------------------------------------------- model options


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--weights",
        default=None,
        help="weights file (.pt or .safetensors), a training run or checkpoints folder (its "
        "latest checkpoint), or a name from `swinface weights list`; default: the weights "
        "shipped with the package (swinface-default) when it holds them, else "
        "swinface-published, downloaded on first use",
    )
    p.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA when available, else CPU), cpu, cuda, cuda:N or mps",
    )
    p.add_argument("--batch-size", type=int, default=64, help="faces per model batch")
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "eager", "compiled", "onnxruntime", "openvino"],
        help="how the model runs; auto: on CPU OpenVINO in bf16 where the CPU has it natively "
        "(the fastest), else ONNX Runtime; eager PyTorch on GPU; compiled: torch.compile "
        "(about 2 minutes of compiling on a CPU)",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        metavar="N",
        help="refuse photos larger than N pixels (width x height), checked before decoding; "
        "0: no limit (default: 50000000)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="photos decoded and searched for faces at once, each on a share of the CPU "
        "cores (default: the cores, at most 8; 1: one photo at a time on every core)",
    )


def _check_model_args(args: argparse.Namespace) -> None:
    """The model options' checks that need no torch (the device is checked separately)."""
    if getattr(args, "_model_args_checked", False):
        return
    args._model_args_checked = True
    check_device_name(args.device)
    _positive("--batch-size", args.batch_size)
    _positive("--workers", getattr(args, "workers", None))
    args.max_pixels = check_max_pixels(getattr(args, "max_pixels", None))


def _load_model(weights: str, device: str):
    from swinface.weights.loading import load_model

    _status(f"loading the model from {weights} ...")
    return load_model(weights, device=device)


def _announce_backend(model, backend: str, device: str) -> None:
    """Say so before a slow one-off step: exporting the ONNX graph, compiling."""
    cpu = _on_cpu(device)
    if backend in ("onnxruntime", "openvino") or (backend == "auto" and cpu):
        from swinface.backends import onnx_path_for

        graph = onnx_path_for(model)
        if not graph.is_file():
            _status(
                "exporting the model as an ONNX graph (once for these "
                f"weights, about a minute; cached as {graph}) ..."
            )
    elif backend == "compiled":
        where = "on a CPU about 2 minutes" if cpu else "about a minute"
        _status(f"compiling the model with torch.compile ({where}; once per run) ...")


def _analyzer(args: argparse.Namespace, weights: str | None = None, aligned: bool | None = None):
    """The FaceAnalyzer the model and detector options describe, with a word on slow steps.

    `weights`: what `prepare_model` returned; when None, the checks run here.
    """
    from swinface.pipeline import FaceAnalyzer

    _check_model_args(args)
    if weights is None:
        weights = prepare_model(args)
    if aligned is None:
        aligned = getattr(args, "aligned", False)
    crops = getattr(args, "tight_crops", False)  # not analyze's --crops (a folder)

    model = _load_model(weights, args.device)
    _announce_backend(model, args.backend, args.device)
    return FaceAnalyzer(
        model,
        device=args.device,
        batch_size=args.batch_size,
        backend=args.backend,
        aligned=aligned,
        crops=crops,
        max_pixels=getattr(args, "max_pixels", None),
        workers=getattr(args, "workers", None),
        **_detector_options(args),
    )


def _detector_options(args: argparse.Namespace) -> dict:
    names = {
        "score_threshold": "score_threshold",
        "min_face": "min_face_size",
        "max_faces": "max_faces",
    }
    return {
        dest: getattr(args, src)
        for src, dest in names.items()
        if getattr(args, src, None) is not None
    }


# ---------------------------------------------------------------- convert


def _convert_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="a checkpoint in the published layout (.pt) or a native file")
    p.add_argument("target", help="the native .safetensors file to write")
    p.add_argument("--half", action="store_true", help="store floating-point tensors as float16")
    p.add_argument("--name", default="", help="a name recorded in the file's metadata")
    p.add_argument(
        "--verify-threshold",
        type=float,
        default=None,
        help="cosine threshold for same/different decisions, stored with the weights",
    )


@command(
    "convert",
    "convert a published SwinFace checkpoint to the native safetensors format",
    _convert_args,
)
def _convert(args: argparse.Namespace) -> int:
    if not Path(args.source).is_file():
        raise CliError(f"{args.source}: no such file")
    target = Path(args.target)
    if target.is_dir():
        raise CliError(f"{target}: is a folder; give the .safetensors file to write")
    if target.exists() and target.resolve() == Path(args.source).resolve():
        raise CliError(f"{target}: is the source itself; give another file to write")
    from swinface.weights import load_model_from_file, save_native

    _status(f"loading {args.source} ...")
    model = load_model_from_file(args.source)
    meta = {}
    threshold = args.verify_threshold
    if threshold is None:
        threshold = model.weights_info.verify_threshold
    if threshold is not None:
        meta["verify_threshold"] = str(threshold)
    save_native(
        model, args.target, name=args.name or model.weights_info.name, half=args.half, metadata=meta
    )
    print(f"wrote {args.target}", file=sys.stderr)
    return EXIT_OK


# ---------------------------------------------------------------- analyze


def _analyze_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "inputs",
        nargs="+",
        help="image or video files, folders (searched recursively for images and videos), "
        "glob patterns, or - (stdin: one path a line, or the bytes of one image)",
    )
    _model_args(p)
    p.add_argument(
        "--aligned",
        action="store_true",
        help="inputs are face crops: skip detection, resize to 112",
    )
    p.add_argument(
        "--annotate",
        metavar="DIR",
        help="write a copy of each photo with boxes, landmarks and labels into DIR, keeping "
        "the photos' relative folders and names (PNG where the format cannot be written); "
        "videos: OUT.mp4 (one video) or a folder, with boxes, track ids and labels",
    )
    p.add_argument(
        "--embeddings", action="store_true", help="include the 512-d embedding of every face"
    )
    p.add_argument(
        "--score-threshold",
        type=float,
        default=None,
        help="minimum detection score (default: the detector's, 0.5)",
    )
    p.add_argument("--min-face", type=float, default=None, help="minimum face size in pixels")
    p.add_argument(
        "--max-faces", type=int, default=None, help="keep at most this many faces per photo"
    )
    from swinface.video.cli import add_video_options

    add_video_options(p)


def _print_record(record: dict) -> None:
    from swinface.jsonio import SCHEMA_VERSION, dumps

    print(dumps({"schema_version": SCHEMA_VERSION, **record}), flush=True)


@command(
    "analyze",
    "detect and analyse every face in photos; one JSON record a photo on stdout "
    "(JSON Lines; fields in docs/analysis-record.md)",
    _analyze_args,
)
def _analyze(args: argparse.Namespace) -> int:
    import dataclasses

    from swinface.inputs import annotation_targets, expand_inputs
    from swinface.progress import Progress
    from swinface.video.formats import is_video_path

    _check_model_args(args)
    _positive("--max-faces", args.max_faces)
    inputs = expand_inputs(args.inputs)
    # Video files take the video path: tracked faces, one record per person (swinface.video).
    videos = [p.path for p in inputs.photos if p.path is not None and is_video_path(p.path)]
    photos = [p for p in inputs.photos if p.path is None or not is_video_path(p.path)]
    still = dataclasses.replace(inputs, photos=photos)
    targets = annotation_targets(still, args.annotate) if args.annotate and photos else None
    for item, problem in inputs.problems:
        _print_record({"source": item, "error": f"{item}: {problem}"})
    if not inputs.photos:
        for item, problem in inputs.problems:
            print(f"swinface analyze: {item}: {problem}", file=sys.stderr)
        print("swinface analyze: no photo to analyse in the inputs", file=sys.stderr)
        return EXIT_FAILED if inputs.problems else EXIT_ERROR
    weights = prepare_model(args)
    analyzer = _analyzer(args, weights, aligned=args.aligned)

    from swinface.video.cli import analyze_videos

    video_failures = analyze_videos(analyzer, videos, args) if videos else 0
    failed = [f"{item}: {problem}" for item, problem in inputs.problems]
    faces = 0
    with Progress(len(photos), "analyze", "photo", enabled=len(photos) > 1) as bar:
        sources = (p.source for p in photos)
        for i, result in enumerate(analyzer.analyze_many(sources)):
            result.source = photos[i].name
            _print_record(result.to_dict(include_embedding=args.embeddings))
            bar.update()
            if not result.ok:
                failed.append(result.error)
                continue
            faces += len(result.faces)
            if targets is not None:
                _write_annotated(result, photos[i].source, targets[i], args.max_pixels)
    done = len(photos) - (len(failed) - len(inputs.problems))
    if photos or inputs.problems:
        print(
            f"analysed {done} of {len(photos) + len(inputs.problems)} photo(s), {faces} face(s)",
            file=sys.stderr,
        )
    for error in failed:
        print(f"  failed: {error}", file=sys.stderr)
    if targets is not None:
        print(f"annotated photos in {args.annotate}", file=sys.stderr)
    return EXIT_FAILED if failed or video_failures else EXIT_OK


def _write_annotated(result, source, target: Path, max_pixels: int | None) -> None:
    """Write the annotated copy atomically (normal permissions, never half a file)."""
    import cv2

    from swinface.atomic import atomic_write_bytes
    from swinface.vision import load_image
    from swinface.vision.draw import draw_faces

    canvas = draw_faces(load_image(source, max_pixels=max_pixels), result.faces)
    suffix = target.suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, 92] if suffix in (".jpg", ".jpeg") else []
    ok, data = cv2.imencode(suffix, cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise CliError(f"{target}: OpenCV cannot write this format")
    atomic_write_bytes(target, data.tobytes())


# ---------------------------------------------------------------- watch


def _watch_args(p: argparse.ArgumentParser) -> None:
    from swinface.video.cli import add_watch_options

    add_watch_options(p)
    _model_args(p)
    p.add_argument("--embeddings", action="store_true", help="include each track's embedding")
    p.add_argument("--score-threshold", type=float, default=None, help="minimum detection score")
    p.add_argument("--min-face", type=float, default=None, help="minimum face size in pixels")
    p.add_argument("--max-faces", type=int, default=None, help="keep at most this many faces")
    p.set_defaults(aligned=False)


@command(
    "watch",
    "track faces in a camera, stream or file live; a JSON record per person as they leave",
    _watch_args,
)
def _watch(args: argparse.Namespace) -> int:
    from swinface.video.cli import run_watch

    return run_watch(_analyzer(args), args)


def _bench_video_args(p: argparse.ArgumentParser) -> None:
    from swinface.video.cli import add_bench_options

    add_bench_options(p)


@command(
    "bench-video",
    "video frames/s end to end at 720p/1080p with 1 and 5 faces, and what keeps up live",
    _bench_video_args,
)
def _bench_video(args: argparse.Namespace) -> int:
    from swinface.video.cli import run_bench

    return run_bench(args)


# ---------------------------------------------------------------- verify


def _verify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", help="first photo")
    p.add_argument("b", help="second photo")
    _model_args(p)
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="cosine similarity at or above which the faces are the same person; default: "
        "the one stored with the weights (without one, only the similarity is printed)",
    )
    p.add_argument("--aligned", action="store_true", help="inputs are aligned face crops")
    p.epilog = (
        "Each photo's largest face is compared; the record says which (its box, x1 y1 x2 y2 "
        "in pixels).\n\n" + EXIT_CODES_HELP
    )


def _face_record(result) -> dict:
    face = result.main_face()
    return {
        "box": [round(float(v), 1) for v in face.box],
        "detection_score": round(float(face.detection_score), 4),
        "faces_found": len(result.faces),
    }


@command(
    "verify",
    "are the main faces of two photos the same person? (exit 0: same, 1: different)",
    _verify_args,
)
def _verify(args: argparse.Namespace) -> int:
    from swinface.inputs import _stat_problem

    _check_model_args(args)
    for photo in (args.a, args.b):
        problem = _stat_problem(photo)
        if problem:
            raise CliError(f"{photo}: {problem}")
    checked = check_weights(args.weights)
    if checked[1] is not None and _is_shipped(checked[1]):
        # Unpacked at once (local, quick): their threshold travels inside the file.
        checked = fetch_weights(checked, args.weights), None
    threshold = args.threshold
    if threshold is None and checked[1] is None:
        threshold = weights_threshold(checked[0])
    elif threshold is None:
        threshold = checked[1].verify_threshold
    if threshold is None:
        print(
            "swinface verify: these weights carry no verification threshold: the similarity "
            "is printed without a decision (exit status 3); pass --threshold T to decide",
            file=sys.stderr,
        )
    check_device(args.device)
    weights = fetch_weights(checked, args.weights)
    analyzer = _analyzer(args, weights, aligned=args.aligned)
    if threshold is None:
        threshold = analyzer.verify_threshold  # a threshold the loader found after all
    results = list(analyzer.analyze_many([args.a, args.b]))
    for result in results:
        if not result.ok:
            raise CliError(result.error)
        if result.main_face() is None:
            raise CliError(f"{result.source}: no face found")
    from swinface.pipeline import cosine_similarity

    faces = [r.main_face() for r in results]
    similarity = cosine_similarity(faces[0].analysis.embedding, faces[1].analysis.embedding)
    same = None if threshold is None else bool(similarity >= threshold)
    for result in results:
        if len(result.faces) > 1:
            box = ", ".join(f"{v:.0f}" for v in result.main_face().box)
            print(
                f"{result.source}: {len(result.faces)} faces; compared the largest, at [{box}]",
                file=sys.stderr,
            )
    _print_record(
        {
            "a": args.a,
            "b": args.b,
            "face_a": _face_record(results[0]),
            "face_b": _face_record(results[1]),
            "similarity": round(similarity, 4),
            "threshold": threshold,
            "same": same,
        }
    )
    if same is None:
        return EXIT_UNDECIDED
    return EXIT_OK if same else EXIT_FAILED


# ---------------------------------------------------------------- weights


def _weights_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser(
        "list",
        help="registered and imported weights, their sources and whether they are cached",
    )
    d = sub.add_parser(
        "download",
        help="download registered weights into the cache",
        formatter_class=_HelpFormatter,
    )
    d.add_argument("name", help="a registered name (see `swinface weights list`)")
    d.add_argument("--force", action="store_true", help="download again even if cached")
    i = sub.add_parser(
        "import",
        help="copy a weights file fetched by hand into the cache, usable by name",
        formatter_class=_HelpFormatter,
    )
    i.add_argument("path", help="the .pt or .safetensors file")
    i.add_argument(
        "--name",
        default=None,
        help="the registered name it is (checked against the registry's hash where one is "
        "pinned); default: the registered weights with this file name, else the file's stem",
    )
    i.add_argument(
        "--force",
        action="store_true",
        help="replace a different file already imported under the same name",
    )
    n = sub.add_parser(
        "info",
        help="what a weights entry is: format, size, sha256, architecture, and the model card "
        "facts its file carries (training config, step, teachers)",
        formatter_class=_HelpFormatter,
    )
    n.add_argument(
        "name",
        help="a name from `swinface weights list`, `default` (the weights used when none are "
        "named), or a weights file",
    )
    c = sub.add_parser(
        "compact",
        help="write weights as int8 per output channel (a quarter of the size), optionally in "
        "checksummed parts, and measure how the int8 model agrees with the float one",
        formatter_class=_HelpFormatter,
    )
    c.add_argument("weights", help="a weights file or registered name")
    c.add_argument("out_dir", help="folder for the int8 file, its parts and agreement.json")
    c.add_argument("--name", default="", help="the weights' name (default: the file's stem)")
    c.add_argument(
        "--parts-mib", type=float, default=0, help="also cut the file into parts of this size"
    )
    c.add_argument(
        "--check",
        nargs="*",
        default=[],
        metavar="STORE",
        help="face stores whose faces measure the agreement (embedding cosine, expression, "
        "gender, attributes, age)",
    )
    c.add_argument("--check-faces", type=int, default=2000, help="faces taken from each store")
    c.add_argument(
        "--meta",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a model card fact stored in the file's metadata (e.g. teachers=sface,fer-expression); "
        "the source's own metadata (train_config, step, verify_threshold) is kept",
    )


@command("weights", "list, describe, download, import or compact weights", _weights_args)
def _weights(args: argparse.Namespace) -> int:
    from swinface.weights import download as dl

    if args.action == "list":
        _list_weights()
        return EXIT_OK
    if args.action == "download":
        print(dl.download(args.name, force=args.force))
        return EXIT_OK
    if args.action == "info":
        return _weights_info(args.name)
    if args.action == "compact":
        return _compact(args)
    return _import(args)


def _list_weights() -> None:
    from swinface.weights import download as dl
    from swinface.weights import registry

    print(f"cache: {registry.cache_dir()}")
    try:
        print(f"default (no --weights): {registry.default_weights()}")
    except registry.WeightsError as err:  # a misplaced $SWINFACE_DEFAULT_WEIGHTS: say, go on
        print(f"default (no --weights): unknown: {err}")
    for name in registry.registered_names():
        try:
            spec = registry.get_spec(name)
        except registry.WeightsError as err:
            print(f"{name:24s} {'absent':10s} {'':>12s}  {str(err).splitlines()[0]}")
            continue
        cached = registry.cached_path(spec).is_file()
        if dl.is_shipped(spec):
            state = "unpacked" if cached else "shipped"
        else:
            state = "cached" if cached else "not cached"
        size = f"{spec.size / 2**20:.0f} MiB" if spec.size else "size unknown"
        digest = spec.sha256[:12] if spec.sha256 else "sha256 unknown"
        print(f"{spec.name:24s} {state:10s} {size:>12s}  {digest}  {spec.description}")
        for url in spec.urls:
            print(f"{'':24s} source: {url}")
    for name, path in dl.list_imported().items():
        size = f"{path.stat().st_size / 2**20:.0f} MiB"
        print(f"{name:24s} {'imported':10s} {size:>12s}  {path.name}")


def _weights_info(name: str) -> int:
    """Print what `name` (a registered or imported name, or a file) is, from its file."""
    from swinface.weights import download as dl
    from swinface.weights import registry
    from swinface.weights.card import read_card, spec_facts

    spec = None
    path = Path(name).expanduser()
    if name == "default" and not path.is_file():
        name = registry.default_weights()
    if not path.is_file():
        if name in registry.registered_names():
            spec = registry.get_spec(name)  # raises, saying why, when not in this install
            found = dl.verify_cached(spec)
            if found is None and dl.is_shipped(spec):
                found = dl.download(spec)  # unpacked from the package: local and quick
            if found is None:
                for key, value in spec_facts(spec):
                    print(f"{key + ':':24s} {value}")
                print(
                    f"not in the cache: the file's own facts show once it is "
                    f"(swinface weights download {spec.name})"
                )
                return EXIT_OK
            path = found
        else:
            path, _ = dl.resolve_weights(name, download=False)  # imported names, or an error
    card = read_card(path, name=spec.name if spec else "")
    rows = [("name", card.name), ("file", str(card.path)), ("format", card.format)]
    rows.append(("size", f"{card.bytes} bytes ({card.bytes / 2**20:.1f} MiB)"))
    rows.append(("sha256", card.sha256))
    if card.architecture:
        config = card.architecture_config
        shape = ", ".join(
            f"{k}={config[k]}"
            for k in ("embed_dim", "depths", "num_heads", "embedding_dim")
            if k in config
        )
        rows.append(("architecture", f"{card.architecture} ({shape})"))
    if card.values is not None:
        rows.append(("values stored", f"{card.values / 1e6:.2f} M (int8 scales excluded)"))
        rows.append(("tensors", ", ".join(f"{d} x{n}" for d, n in sorted(card.dtypes.items()))))
    if spec is not None and spec.license:
        rows.append(("licence", spec.license))
    rows += card.facts
    for key, value in rows:
        print(f"{key + ':':24s} {value}")
    return EXIT_OK


def _compact(args: argparse.Namespace) -> int:
    import numpy as np

    from swinface.data.store import open_store
    from swinface.weights.compact import compact

    meta = {}
    for item in args.meta:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--meta {item}: give KEY=VALUE")
        meta[key.strip()] = value
    faces = None
    if args.check:
        rng = np.random.default_rng(0)
        chosen = []
        for folder in args.check:
            store = open_store(folder)
            take = np.sort(rng.permutation(len(store))[: args.check_faces])
            chosen.append(np.asarray(store.faces[take]))
        faces = np.concatenate(chosen)
    part_bytes = int(args.parts_mib * 2**20) if args.parts_mib else None
    path, figures = compact(
        args.weights,
        args.out_dir,
        name=args.name,
        part_bytes=part_bytes,
        check_faces=faces,
        metadata=meta,
    )
    print(f"{path} ({path.stat().st_size / 2**20:.1f} MiB)")
    if figures is not None:
        print(" ".join(f"{k}={v:.4g}" for k, v in figures.as_dict().items()))
    return EXIT_OK


def _import(args: argparse.Namespace) -> int:
    from swinface.weights import download as dl

    path = Path(args.path).expanduser()
    if not path.is_file():
        raise CliError(f"{args.path}: no such file")
    if args.name is not None:
        from swinface.weights import registry

        registry.get_spec(args.name)  # an unknown name fails before the file is read
    from swinface.weights import load_model_from_file

    _status(f"checking that {path} loads ...")
    load_model_from_file(path)  # refuse a file that does not load before it enters the cache
    imported = dl.import_weights(path, name=args.name, force=args.force)
    print(imported.path)
    print(f"imported as {imported.name!r}: use --weights {imported.name}", file=sys.stderr)
    if not imported.verified:
        what = (
            f"the registry pins no hash for {imported.name!r}"
            if imported.spec is not None
            else "it is not a registered name"
        )
        print(
            f"nothing was verified: {what}. Its sha256 {imported.sha256} is recorded and "
            "checked on every later use",
            file=sys.stderr,
        )
    return EXIT_OK


# ---------------------------------------------------------------- prepare


def _format_names() -> list[str]:
    from swinface.data.formats import FORMATS

    return sorted(FORMATS)


def _crop_framing_args(p: argparse.ArgumentParser) -> None:
    """--aligned or --crops: how face-crop datasets (no detection) become 112x112 faces."""
    framing = p.add_mutually_exclusive_group()
    framing.add_argument(
        "--aligned",
        action="store_true",
        help="images are crops already in the 5-point template's framing: resize them",
    )
    framing.add_argument(
        "--crops",
        dest="tight_crops",  # not analyze's --crops (a folder for face crops)
        action="store_true",
        help="images are tight face crops too small to detect (FER2013): enlarged, padded "
        "and aligned into the template's framing, as faces in photos are",
    )


def _prepare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("format", choices=_format_names(), metavar="FORMAT", help="dataset format")
    p.add_argument("path", help="the dataset's folder or label file")
    p.add_argument(
        "out",
        help="the face store folder to write (new, empty, or an existing store with --overwrite)",
    )
    _crop_framing_args(p)
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="prepare N samples drawn at random (all classes and ages, not the first N files)",
    )
    p.add_argument("--seed", type=int, default=0, help="the random draw of --limit")
    p.add_argument("--split", default=None, help="only this split of the dataset (e.g. train)")
    p.add_argument(
        "--lenient",
        action="store_true",
        help="skip and count malformed label lines instead of stopping",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUT when it is an existing face store (never anything else)",
    )
    p.epilog = "formats: " + ", ".join(_format_names()) + " (see the README's Datasets table)"


@command(
    "prepare",
    "detect and align a raw dataset once into a compact 112x112 face store",
    _prepare_args,
)
def _prepare(args: argparse.Namespace) -> int:
    from swinface.data import open_dataset
    from swinface.data.prepare import check_store_target, prepare_samples

    _positive("--limit", args.limit)
    if not os.path.exists(args.path):
        raise CliError(f"{args.path}: no such file or folder")
    check_store_target(args.out, [args.path], overwrite=args.overwrite)
    dataset = open_dataset(args.format, args.path, strict=not args.lenient, split=args.split)
    _, report = prepare_samples(
        dataset.samples,
        args.out,
        aligned=args.aligned,
        crops=args.tight_crops,
        limit=args.limit,
        meta={"dataset_format": args.format, "split": args.split, "limit": args.limit},
        overwrite=args.overwrite,
        inputs=[args.path],
        seed=args.seed,
    )
    report.label_errors = list(getattr(dataset, "skipped", []))
    print(report.summary())
    return EXIT_OK


# ---------------------------------------------------------------- evaluate


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "task",
        choices=["verification", "expression", "age", "gender", "attributes", "all"],
        help="what to measure; all: every task the dataset's labels allow",
    )
    p.add_argument("format", choices=_format_names(), metavar="FORMAT", help="dataset format")
    p.add_argument("path", help="the dataset's folder or file")
    _model_args(p)
    _crop_framing_args(p)
    p.add_argument("--out", default=None, help="report folder (default: reports/FORMAT-TASK)")
    p.add_argument("--split", default=None, help="only this split of the dataset (e.g. val, test)")
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="only N samples / pairs, drawn at random (see --seed) keeping each class's share",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the --limit draw and of the folds of pairs that carry none (default: 0)",
    )
    p.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="verification on embedding(face) + embedding(mirrored face), the paper's "
        "protocol (default for pairs); --no-flip: the face alone",
    )
    p.add_argument(
        "--group-by", nargs="*", default=None, help="group labels to break figures down by"
    )
    p.add_argument("--lenient", action="store_true", help="skip and count malformed label lines")
    p.epilog = "formats: " + ", ".join(_format_names())


@command("evaluate", "the field's protocols on a dataset; JSON, Markdown and plots", _evaluate_args)
def _evaluate(args: argparse.Namespace) -> int:
    _check_model_args(args)
    _positive("--limit", args.limit)
    if not os.path.exists(args.path):
        raise CliError(f"{args.path}: no such file or folder")
    out = Path(args.out or Path("reports") / f"{args.format}-{args.task}")
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out}: is a file; give a folder")
    from swinface.data import open_dataset
    from swinface.evaluate import evaluate, headline, write_report

    checked = check_weights(args.weights)
    check_device(args.device)
    dataset = open_dataset(args.format, args.path, strict=not args.lenient, split=args.split)
    weights = fetch_weights(checked, args.weights)
    analyzer = _analyzer(args, weights, aligned=args.aligned)
    report = evaluate(
        args.task,
        dataset,
        analyzer,
        group_by=args.group_by,
        limit=args.limit,
        seed=args.seed,
        flip=args.flip,
        progress=True,
    )
    files = write_report(report, out)
    print(headline(report))
    print(f"report: {out}/summary.md ({len(files)} files)")
    return EXIT_OK


# ---------------------------------------------------------------- bench


# The names in `swinface.model.config.MODEL_CONFIGS`, listed here so `--help` needs no torch
# (a test keeps the two in step).
MODEL_NAMES = ("swinface_t", "swinface_nano", "swinface_micro", "swinface_nano_resnet")


def _model_source_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--weights", default=None, help=f"weights to {what} (default: random weights, same speed)"
    )
    p.add_argument(
        "--model",
        default="swinface_t",
        choices=MODEL_NAMES,
        help="architecture when no weights are named (swinface_nano: a small model for tests "
        "and CPU experiments, not for real use)",
    )


def _bench_args(p: argparse.ArgumentParser) -> None:
    _model_source_args(p, "time")
    p.add_argument(
        "--device", default="auto", help="auto (CUDA when available, else CPU), cpu, cuda, cuda:N"
    )
    p.add_argument(
        "--backends",
        nargs="+",
        default=None,
        choices=["eager", "compiled", "onnxruntime", "openvino", "plain"],
        help="backends to time (default: eager, plain, onnxruntime and, when installed, "
        "openvino on CPU, each at every precision it has there; eager and compiled on GPU). "
        "plain: the published module-per-subnet structure in eager float32, the reference",
    )
    p.add_argument(
        "--precisions",
        nargs="+",
        default=None,
        choices=["float32", "bfloat16", "float16", "int8"],
        help="only these precisions (eager float32, the baseline, is always timed)",
    )
    p.add_argument(
        "--batches",
        nargs="+",
        type=int,
        default=None,
        help="batch sizes (default: 1 16 on CPU, 1 32 256 1024 on GPU)",
    )
    p.add_argument("--seconds", type=float, default=2.0, help="time each figure over this long")
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="time the backends in turn this many times and keep each one's best",
    )
    p.add_argument(
        "--faces",
        default=None,
        help="folder of aligned face crops: half calibrate the int8 graph, half measure "
        "agreement with float32 (default: random pixels, good for speed figures only)",
    )
    p.add_argument(
        "--reference",
        action="store_true",
        help="also print each fast path's agreement with eager float32 (embedding cosine, "
        "expression, gender, attributes, age) beside the accuracy bar",
    )
    p.add_argument(
        "--photo", default=None, help="photo for the end-to-end figure (default: bundled sample)"
    )
    p.add_argument(
        "--train-batch",
        type=int,
        default=None,
        help="images per task in the training figure (default: 32 on GPU, 2 on CPU; 0: skip)",
    )


MAX_BENCH_FACES = 256


def _cpu_bench_backends() -> list[str]:
    import importlib.util

    openvino = importlib.util.find_spec("openvino") is not None
    return ["eager", "plain", "onnxruntime", *(["openvino"] if openvino else [])]


def _bench_faces(args: argparse.Namespace) -> tuple[object, object, str]:
    """(calibration faces, held-out faces, where they came from) for the int8 graph and the
    agreement figures."""
    import numpy as np

    if args.faces:
        from swinface.quantize import load_faces

        faces = load_faces(args.faces, limit=MAX_BENCH_FACES)
        source = f"{len(faces) - len(faces) // 2} held-out faces from {args.faces}"
    else:
        faces = np.random.default_rng(1).integers(0, 256, (64, 112, 112, 3), np.uint8)
        source = "32 faces of random pixels (a weak proxy: use --faces)"
    half = len(faces) // 2
    return faces[:half], faces[half:], source


def _bench_int8_graph(model, calibration, tmp: Path):
    """The int8 graph to time: the cached one `auto` would run, else one calibrated here
    (in a temporary folder, so that `auto` never takes a graph the benchmark made)."""
    from swinface.export import cached_onnx_graph
    from swinface.quantize import cached_int8_graph, quantize_graph

    cached = cached_int8_graph(model)
    if cached is not None:
        return cached, "the cached int8 graph of these weights"
    _status(f"quantising the model to int8 on {len(calibration)} faces (about a minute) ...")
    return quantize_graph(cached_onnx_graph(model), calibration, tmp / "int8.onnx"), (
        f"an int8 graph calibrated on {len(calibration)} faces here"
    )


@command(
    "bench", "faces/s per backend and batch, photos/s end to end, training images/s", _bench_args
)
def _bench(args: argparse.Namespace) -> int:
    _positive("--seconds", args.seconds)
    _positive("--rounds", args.rounds)
    if args.photo and not Path(args.photo).is_file():
        raise CliError(f"--photo {args.photo}: no such file")
    if args.faces and not Path(args.faces).is_dir():
        raise CliError(f"--faces {args.faces}: not a folder")
    check_device_name(args.device)
    weights = prepare_model(args) if args.weights else None
    import tempfile

    import torch

    from swinface import bench
    from swinface.assets import SAMPLE_PHOTO
    from swinface.backends import create_backend
    from swinface.model import create_model
    from swinface.pipeline import FaceAnalyzer
    from swinface.weights.loading import load_model, resolve_device

    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    if weights:
        _status(f"loading the model from {weights} ...")
        model = load_model(weights, device="cpu")
    else:
        torch.manual_seed(0)  # fixed random weights: one exported ONNX graph, reused
        model = create_model(args.model)
    model.eval()
    backends = args.backends or (["eager", "compiled"] if gpu else _cpu_bench_backends())
    batches = args.batches or ([1, 32, 256, 1024] if gpu else [1, 16])
    targets = bench.default_targets(device, backends)
    if args.precisions:
        targets = [t for t in targets if t == bench.BASELINE or t[1] in args.precisions]
    print(f"machine: {bench.machine_description(device)}")
    for backend in backends:
        _announce_backend(model, backend, str(device))
    calibration, held_out, source = _bench_faces(args)
    runners: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        int8_graph = None
        if ("onnxruntime", "int8") in targets:
            int8_graph, how = _bench_int8_graph(model, calibration, Path(tmp))
            print(f"int8: {how}")
        rows = bench.bench_model(
            model,
            device,
            backends,
            batches,
            min_seconds=args.seconds,
            targets=targets,
            rounds=args.rounds,
            int8_graph=int8_graph,
            runners=runners,
        )
        print(bench.format_rows(rows), flush=True)
        if args.reference:
            print()
            print(bench.format_accuracy(bench.bench_accuracy(runners, held_out), source))
    picked = create_backend("auto", model, device)
    print(f"\nauto runs {picked.name} {picked.precision} here for these weights")
    analyzer = FaceAnalyzer(model=model, device=str(device), backend="auto")
    photo = args.photo or SAMPLE_PHOTO
    rows.append(bench.bench_pipeline(analyzer, photo, min_seconds=args.seconds))
    if analyzer.workers > 1:
        one_at_a_time = copy.copy(analyzer)  # the same runner and detector
        one_at_a_time.workers = 1
        serial = bench.bench_pipeline(one_at_a_time, photo, min_seconds=args.seconds)
        print(
            f"end to end: {rows[-1].per_second:.1f} photos/s with {analyzer.workers} photos "
            f"prepared at once, {serial.per_second:.1f} one at a time "
            f"({rows[-1].per_second / serial.per_second:.2f}x)"
        )
    stages = bench.bench_stages(analyzer, photo, min_seconds=min(args.seconds, 1.0))
    slowest = max(stages, key=stages.get)
    print(
        "stages, ms per photo: "
        + ", ".join(f"{name} {ms:.1f}" for name, ms in stages.items())
        + f" (bound by {slowest})"
    )
    train_batch = args.train_batch if args.train_batch is not None else (32 if gpu else 2)
    if train_batch:
        rows.append(bench.bench_training(args.model, device, train_batch))
    print()
    print(bench.format_rows(rows[-2:] if train_batch else rows[-1:]))
    return EXIT_OK


# ---------------------------------------------------------------- quantize


def _quantize_args(p: argparse.ArgumentParser) -> None:
    _model_source_args(p, "quantise")
    p.add_argument(
        "--faces",
        required=True,
        help="folder of aligned face crops (resized to 112x112): half calibrate, half measure "
        "the agreement with float32",
    )
    p.add_argument(
        "--limit", type=int, default=512, help="use at most this many faces (default: 512)"
    )
    p.add_argument(
        "--out", default=None, help="write the graph here (default: the cache, where auto finds it)"
    )


@command(
    "quantize",
    "an int8 ONNX graph for CPU, calibrated on aligned faces; it and OpenVINO bf16 checked "
    "against float32 (auto takes only what meets the accuracy bar)",
    _quantize_args,
)
def _quantize(args: argparse.Namespace) -> int:
    if not Path(args.faces).is_dir():
        raise CliError(f"--faces {args.faces}: not a folder")
    _positive("--limit", args.limit)
    weights = fetch_weights(check_weights(args.weights), args.weights) if args.weights else None
    import torch

    from swinface.model import create_model
    from swinface.quantize import ACCURACY_BAR, load_faces, quantize_model
    from swinface.weights.loading import load_model

    faces = load_faces(args.faces, limit=args.limit)
    if weights:
        model = load_model(weights, device="cpu")
    else:
        torch.manual_seed(0)  # the same random weights as `swinface bench`
        model = create_model(args.model)
    _status(
        f"quantising on {len(faces) - len(faces) // 2} faces, checking on {len(faces) // 2} ..."
    )
    path, result = quantize_model(model, faces, out=args.out)
    print(f"int8 graph: {path}")
    print(f"int8 agreement with float32: {result.summary()}")
    print(_verdict(result))
    from swinface.backends import cpu_runs_bf16

    bf16 = None
    if cpu_runs_bf16():  # what auto runs on this CPU: checked on the same held-out faces
        from swinface.quantize import check_bf16, held_out_faces

        bf16 = check_bf16(model, held_out_faces(faces))
        print(f"OpenVINO bf16 agreement with float32: {bf16.summary()}")
        print(_verdict(bf16))
    if bf16 is not None and bf16.meets(ACCURACY_BAR):
        runs = "OpenVINO bf16"
    elif result.meets(ACCURACY_BAR) and args.out is None:
        runs = "ONNX Runtime on this int8 graph"
    else:
        runs = "ONNX Runtime float32"
    print(f"auto on this CPU runs these weights with {runs}")
    return EXIT_OK


def _verdict(result) -> str:
    from swinface.quantize import ACCURACY_BAR

    if result.meets(ACCURACY_BAR):
        return "meets the accuracy bar"
    return "misses the accuracy bar: " + "; ".join(result.shortfalls())


# ---------------------------------------------------------------- export-onnx

MIN_OPSET = 14  # scaled_dot_product_attention and the dynamic-batch reshapes need opset 14
MAX_OPSET = 20


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("weights", help="weights file, training run folder or registered name")
    p.add_argument("out", help="the .onnx file to write")
    p.add_argument(
        "--opset",
        type=int,
        default=17,
        help=f"ONNX opset, {MIN_OPSET} to {MAX_OPSET}",
    )


@command(
    "export-onnx",
    "the whole model, all 43 outputs, as an ONNX graph taking uint8 faces (dynamic batch)",
    _export_args,
)
def _export(args: argparse.Namespace) -> int:
    if not MIN_OPSET <= args.opset <= MAX_OPSET:
        raise CliError(
            f"--opset {args.opset}: the graph needs opset {MIN_OPSET} or newer "
            f"(up to {MAX_OPSET}); the default is 17"
        )
    out = Path(args.out)
    if out.is_dir():
        raise CliError(f"{out}: is a folder; give the .onnx file to write")
    weights = fetch_weights(check_weights(args.weights), args.weights)
    from swinface.export import export_onnx

    model = _load_model(weights, "cpu")
    _status("exporting the ONNX graph (about a minute for Swin-T on a CPU) ...")
    path = export_onnx(model, out, opset=args.opset)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.0f} MiB)")
    return EXIT_OK


# ---------------------------------------------------------------- train


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="a training config (YAML), e.g. configs/public.yaml")
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="stop after this many more steps (a resumable chunk)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="override the config's total steps (the learning-rate schedule's length)",
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="stop (with a checkpoint) after this many minutes of training: a resumable chunk",
    )
    p.add_argument(
        "--no-resume",
        action="store_true",
        help="start afresh even if the output folder has checkpoints",
    )
    p.add_argument("--output-dir", default=None, help="override the config's output folder")
    p.add_argument(
        "--allow-collapse",
        action="store_true",
        help="go on when validation after the warm-up is no better than a constant answer "
        "(by default the run stops there, with a checkpoint)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config value, dotted for nested keys, the value read as YAML "
        "(e.g. --set model=swinface_nano --set tasks.identity.batch_size=8); repeatable",
    )


@command(
    "train",
    "multi-task training; resumable; multi-GPU and multi-node through torchrun",
    _train_args,
)
def _train(args: argparse.Namespace) -> int:
    if not Path(args.config).is_file():
        raise CliError(f"{args.config}: no such file")
    _positive("--max-steps", args.max_steps)
    if args.max_minutes is not None and not args.max_minutes > 0:
        raise CliError(f"--max-minutes: must be above 0, got {args.max_minutes}")
    from swinface.train.config import load_config
    from swinface.train.trainer import train

    _positive("--steps", args.steps)
    from swinface.train.config import parse_assignment

    overrides = dict(parse_assignment(text) for text in args.set)
    if args.output_dir:  # a path typed on the command line is from here, not the config's folder
        overrides["output_dir"] = str(Path(args.output_dir).resolve())
    if args.steps:
        overrides["steps"] = args.steps
    if args.allow_collapse:
        overrides["allow_collapse"] = True
    config = load_config(args.config, overrides)
    # A run's loss lines and validation lines (each figure beside the constant answer's)
    # are what `train` reports, with or without -v.
    logging.getLogger("swinface.train").setLevel(logging.INFO)
    trainer = train(
        config, resume=not args.no_resume, max_steps=args.max_steps, max_minutes=args.max_minutes
    )
    if trainer.env.is_main:
        print(
            f"step {trainer.step} of {config.steps}; checkpoints in {config.output_dir}/checkpoints"
        )
    return EXIT_OK


# ---------------------------------------------------------------- teachers and distillation targets


def _teachers_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.add_parser("list", help="declared teachers, their packages and whether they are converted")
    c = sub.add_parser("convert", help="check a teacher's package files and convert them to ONNX")
    c.add_argument("names", help="comma-separated teacher names (see `swinface teachers list`)")
    c.add_argument("--source", default=None, help="the package's wheel, npm tarball or folder")
    c.add_argument("--force", action="store_true", help="convert again even if cached")
    e = sub.add_parser("evaluate", help="measure teachers on a prepared face store")
    e.add_argument("store", help="a face store from `swinface prepare`")
    e.add_argument("--teachers", required=True, help="comma-separated teacher names")
    e.add_argument("--pairs", type=int, default=6000, help="identity pairs to build (half same)")
    e.add_argument("--seed", type=int, default=0, help="seed for the identity pairs")
    e.add_argument("--json", default=None, help="also write the full results to this JSON file")


@command(
    "teachers", "list, convert and evaluate the teacher models for distillation", _teachers_args
)
def _teachers(args: argparse.Namespace) -> int:
    from swinface.teachers import registry

    if args.action in (None, "list"):
        print(f"cache: {registry.teachers_dir()}")
        for t in registry.list_teachers():
            state = "converted" if registry.cached(t) else "not converted"
            print(
                f"{t.name:18s} {t.package + '==' + t.version:26s} {state:14s} {', '.join(t.tasks)}"
            )
            print(f"{'':18s} {t.description}; licence {t.licence}")
            for i in t.inputs:
                print(f"{'':18s} input {i.name}: {i.crop.describe()}")
            print(f"{'':18s} install: {t.install_command}")
        return 0
    if args.action == "convert":
        for t in registry.resolve(args.names):
            path = registry.ensure(t, args.source, force=args.force)
            check = registry.read_provenance(t).get("check")
            print(
                f"{t.name}: {path}"
                + (f" (check: {check['metric']} {check['value']:.6g})" if check else "")
            )
        return 0
    import json

    from swinface.data.store import open_store
    from swinface.evaluate.metrics import jsonable
    from swinface.teachers import runner
    from swinface.teachers.evaluate import evaluate_teacher, summary

    store = open_store(args.store)
    report = {}
    for t in registry.resolve(args.teachers):
        results = evaluate_teacher(runner.load(t), store, pairs=args.pairs, seed=args.seed)
        if not results:
            print(f"{t.name}: {store.path} has no labels for {', '.join(t.tasks)}")
        for task, result in results.items():
            print(f"{t.name} {task}: {summary(result)}")
        report[t.name] = {task: r.to_dict() for task, r in results.items()}
    if args.json:
        from swinface.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(jsonable(report), indent=1))
    return 0


def _distill_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="a face store from `swinface prepare`")
    p.add_argument(
        "--teachers", required=True, help="comma-separated teacher names, e.g. sface,age-gender"
    )
    p.add_argument("--chunk", type=int, default=1024, help="faces per resumable chunk")
    p.add_argument("--force", action="store_true", help="recompute even finished targets")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads per teacher")


@command(
    "distill-targets",
    "run teachers over a face store and write their outputs beside its labels (resumable)",
    _distill_args,
)
def _distill_targets(args: argparse.Namespace) -> int:
    from swinface.data.targets import write_targets
    from swinface.teachers import registry, runner

    models = [runner.load(t, threads=args.threads) for t in registry.resolve(args.teachers)]
    targets = write_targets(args.store, models, chunk=args.chunk, force=args.force)
    print(f"{targets.path}: {len(targets)} faces")
    for name, info in targets.meta["arrays"].items():
        print(f"  {name}: {info['dtype']} {tuple(info['shape'])}")
    return 0


# ---------------------------------------------------------------- bundle


def _bundle_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    pk = sub.add_parser("pack", help="pack face stores (with their targets) into parts")
    pk.add_argument(
        "paths", nargs="+", metavar="STORE ... OUT_DIR", help="stores, then the bundle folder"
    )
    pk.add_argument("--part-mib", type=float, default=60.0, help="largest part, in MiB")
    pk.add_argument("--quality", type=int, default=90, help="JPEG or WebP quality, 1-100")
    pk.add_argument("--codec", choices=("jpeg", "webp"), default="jpeg", help="face codec")
    pk.add_argument(
        "--grey-size",
        type=int,
        default=None,
        help="faces of stores prepared from small grey crops with --aligned (FER2013's 48x48) "
        "travel at this size and round-trip exactly; other stores' faces travel whole",
    )
    pk.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    up = sub.add_parser("unpack", help="check every part and write the stores back")
    up.add_argument("bundle", help="a bundle folder from `swinface bundle pack`")
    up.add_argument("stores_dir", help="folder to write the stores into")
    up.add_argument("--overwrite", action="store_true", help="replace existing stores")


@command("bundle", "pack face stores into checksummed parts, or unpack them", _bundle_args)
def _bundle(args: argparse.Namespace) -> int:
    from swinface.data import bundle

    if args.action == "pack":
        if len(args.paths) < 2:
            raise CliError("bundle pack: give at least one STORE and then OUT_DIR")
        *stores, out = args.paths
        report = bundle.pack(
            stores,
            out,
            part_mib=args.part_mib,
            quality=args.quality,
            codec=args.codec,
            grey_size=args.grey_size,
            overwrite=args.overwrite,
        )
        for part in report.parts:
            print(f"  {part['file']}: {part['bytes']} bytes")
        for s in report.stores:
            print(
                f"  {s['name']}: {s['count']} faces, {s['face_bytes'] / max(s['count'], 1):.0f} bytes/face"
            )
        print(
            f"{report.path}: {report.total_bytes} bytes in {len(report.parts)} parts, {report.seconds:.1f} s"
        )
        return 0
    for path in bundle.unpack(args.bundle, args.stores_dir, overwrite=args.overwrite):
        print(path)
    return 0


# ---------------------------------------------------------------- serve


def _serve_args(p: argparse.ArgumentParser) -> None:
    _model_args(p)
    p.set_defaults(aligned=False)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--data", default=None, help="data folder (galleries, indexes)")
    p.add_argument(
        "--store",
        default="sqlite",
        help="sqlite (in the data folder), a .sqlite file, or postgresql://user@host/db",
    )
    p.add_argument("--keys-file", default=None, help="API keys, one per line (or sha256:<hex>)")
    p.add_argument("--protect-reads", action="store_true", help="read endpoints need a key too")
    p.add_argument("--threshold", type=float, default=None, help="cosine threshold for 'same'")
    p.add_argument("--max-body-mb", type=float, default=20.0, help="request body limit")
    p.add_argument("--max-batch", type=int, default=16, help="photos per dynamic batch")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="longest wait to fill a batch")
    p.add_argument("--max-queue", type=int, default=64, help="photos waiting before 503s")
    p.add_argument("--faiss-min", type=int, default=None, help="FAISS index from this gallery size")
    p.add_argument("--cors-origin", action="append", default=[], help="allow this origin (CORS)")
    p.add_argument("--score-threshold", type=float, default=None, help="minimum detection score")
    p.add_argument("--min-face", type=float, default=None, help="minimum face size in pixels")
    p.add_argument("--max-faces", type=int, default=None, help="at most this many faces per photo")


@command("serve", "the REST API, web page and identity galleries on one port", _serve_args)
def _serve(args: argparse.Namespace) -> int:
    from swinface.serve.cli import serve

    return serve(args, _analyzer(args))


def _bench_serve_args(p: argparse.ArgumentParser) -> None:
    from swinface.serve.loadtest import add_arguments

    add_arguments(p)


@command(
    "bench-serve",
    "load test of a local `swinface serve` (1, 8, 32 clients) and the 1M-embedding search figure",
    _bench_serve_args,
)
def _bench_serve(args: argparse.Namespace) -> int:
    from swinface.serve.loadtest import run

    return run(args)


# ---------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    from swinface import __version__

    parser = argparse.ArgumentParser(
        prog="swinface",
        description="Face identity, expression, age and attributes with SwinFace.",
        epilog=EXIT_CODES_HELP,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"swinface {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_arguments, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.formatter_class = _HelpFormatter
        add_arguments(p)
        if p.epilog is None:
            p.epilog = EXIT_CODES_HELP
        p.set_defaults(run=run)
    return parser


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the exit flush cannot fail again."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (tests capture it)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (tests call this in-process)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.run(args) or 0)
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (SwinFaceError, ValueError, OSError, RuntimeError) as err:
        if args.verbose:
            log.exception("%s failed", args.command)
        message = str(err) or type(err).__name__
        if isinstance(err, RuntimeError | OSError) and not isinstance(err, SwinFaceError):
            message = f"{type(err).__name__}: {message} (run with -v for details)"
        print(f"swinface {args.command}: error: {message}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
