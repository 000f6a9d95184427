"""The `swinface` command line: a thin layer over the library."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

log = logging.getLogger("swinface")

# name -> (help, add_arguments, run), filled by the @command decorator below.
Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None]):
    """Register `run(args) -> exit status` as the subcommand `name`."""

    def register(run: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = (help, arguments, run)
        return run

    return register


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
    from swinface.weights import load_model_from_file, save_native

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
    return 0


# ---------------------------------------------------------------- analyze


def expand_inputs(items: Sequence[str]) -> list[str]:
    """Files as given; folders searched recursively for images; glob patterns expanded."""
    import glob
    from pathlib import Path

    from swinface.data.formats.base import IMAGE_SUFFIXES

    paths: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            paths += sorted(
                str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
            )
        elif not p.exists() and glob.has_magic(item):
            paths += sorted(glob.glob(item, recursive=True))
        else:
            paths.append(item)  # a missing file is reported by name when it is read
    return paths


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--weights",
        default=None,
        help="weights file (.pt or .safetensors) or registered name; default: the registry's default",
    )
    p.add_argument(
        "--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 ..."
    )
    p.add_argument("--batch-size", type=int, default=64, help="faces per model batch")
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "eager", "compiled", "onnxruntime"],
        help="how the model runs; auto: ONNX Runtime on CPU, PyTorch on GPU",
    )


def _analyze_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    _model_args(p)
    p.add_argument(
        "--aligned",
        action="store_true",
        help="inputs are face crops: skip detection, resize to 112",
    )
    p.add_argument(
        "--annotate", metavar="DIR", help="write each photo with boxes, landmarks and labels here"
    )
    p.add_argument(
        "--embeddings", action="store_true", help="include the 512-d embedding of every face"
    )
    p.add_argument("--score-threshold", type=float, default=None, help="minimum detection score")
    p.add_argument("--min-face", type=float, default=None, help="minimum face size in pixels")
    p.add_argument(
        "--max-faces", type=int, default=None, help="keep at most this many faces per photo"
    )


def _analyzer(args: argparse.Namespace):
    """The FaceAnalyzer that the model and detector options of a command describe."""
    from swinface.pipeline import FaceAnalyzer

    return FaceAnalyzer(
        weights=args.weights,
        device=args.device,
        batch_size=args.batch_size,
        backend=args.backend,
        aligned=args.aligned,
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


@command("analyze", "detect and analyse every face in photos; JSON Lines on stdout", _analyze_args)
def _analyze(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from tqdm import tqdm

    paths = expand_inputs(args.inputs)
    if not paths:
        print("swinface analyze: no image found in the inputs", file=sys.stderr)
        return 1
    analyzer = _analyzer(args)
    annotate = Path(args.annotate) if args.annotate else None
    if annotate:
        annotate.mkdir(parents=True, exist_ok=True)
    failed, faces = [], 0
    progress = tqdm(total=len(paths), unit="photo", disable=len(paths) < 10, file=sys.stderr)
    for result in analyzer.analyze_many(paths):
        progress.update(1)
        print(json.dumps(result.to_dict(include_embedding=args.embeddings)), flush=True)
        if not result.ok:
            failed.append(result)
            continue
        faces += len(result.faces)
        if annotate:
            _write_annotated(result, annotate)
    progress.close()
    print(
        f"analysed {len(paths) - len(failed)} of {len(paths)} photo(s), {faces} face(s)",
        file=sys.stderr,
    )
    for result in failed:
        print(f"  failed: {result.error}", file=sys.stderr)
    return 1 if failed else 0


def _write_annotated(result, folder) -> None:
    from pathlib import Path

    import cv2

    from swinface.vision import load_image
    from swinface.vision.draw import draw_faces

    canvas = draw_faces(load_image(result.source), result.faces)
    target = Path(folder) / (Path(result.source).stem + ".jpg")
    cv2.imwrite(
        str(target), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92]
    )


# ---------------------------------------------------------------- verify


def _verify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", help="first photo")
    p.add_argument("b", help="second photo")
    _model_args(p)
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="cosine threshold for 'same'; default: the one stored with the weights",
    )
    p.add_argument("--aligned", action="store_true", help="inputs are aligned face crops")


@command("verify", "are the main faces of two photos the same person?", _verify_args)
def _verify(args: argparse.Namespace) -> int:
    import json

    from swinface.pipeline import FaceAnalyzer, cosine_similarity

    analyzer = FaceAnalyzer(
        weights=args.weights, device=args.device, backend=args.backend, aligned=args.aligned
    )
    threshold = args.threshold if args.threshold is not None else analyzer.verify_threshold
    if threshold is None:
        raise ValueError("these weights carry no verification threshold: pass --threshold")
    faces = []
    for result in analyzer.analyze_many([args.a, args.b]):
        if not result.ok:
            raise ValueError(result.error)
        face = result.main_face()
        if face is None:
            raise ValueError(f"{result.source}: no face found")
        faces.append(face)
    similarity = cosine_similarity(faces[0].analysis.embedding, faces[1].analysis.embedding)
    same = similarity >= threshold
    print(
        json.dumps(
            {
                "a": args.a,
                "b": args.b,
                "similarity": round(similarity, 4),
                "threshold": threshold,
                "same": bool(same),
            }
        )
    )
    return 0


# ---------------------------------------------------------------- weights


def _weights_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("list", help="registered weights, their sources and whether they are cached")
    d = sub.add_parser("download", help="download registered weights into the cache")
    d.add_argument("name")
    d.add_argument("--force", action="store_true", help="download again even if cached")
    i = sub.add_parser("import", help="copy a weights file fetched by hand into the cache")
    i.add_argument("path")
    i.add_argument(
        "--name", default=None, help="the registered name it is (checked against its hash)"
    )


@command("weights", "list, download or import named weights", _weights_args)
def _weights(args: argparse.Namespace) -> int:
    from swinface.weights import download as dl
    from swinface.weights import registry

    if args.action == "list":
        print(f"cache: {registry.cache_dir()}")
        for spec in registry.list_specs():
            cached = registry.cached_path(spec).is_file()
            size = f"{spec.size / 2**20:.0f} MiB" if spec.size else "size unknown"
            digest = spec.sha256[:12] if spec.sha256 else "sha256 unknown"
            print(
                f"{spec.name:24s} {'cached' if cached else 'not cached':10s} {size:>12s}  {digest}  {spec.description}"
            )
            for url in spec.urls:
                print(f"{'':24s} source: {url}")
        return 0
    if args.action == "download":
        print(dl.download(args.name, force=args.force))
        return 0
    from swinface.weights import load_model_from_file

    load_model_from_file(args.path)  # refuse a file that does not load before it enters the cache
    print(dl.import_weights(args.path, name=args.name))
    return 0


# ---------------------------------------------------------------- prepare


def _prepare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "format",
        help="dataset format (see `swinface.data.FORMATS`), e.g. utkface, celeba, fer2013-folders",
    )
    p.add_argument("path", help="the dataset's folder or label file")
    p.add_argument("out", help="the face store folder to write")
    p.add_argument(
        "--aligned", action="store_true", help="images are face crops: resize instead of detecting"
    )
    p.add_argument("--limit", type=int, default=None, help="prepare only the first N samples")
    p.add_argument("--split", default=None, help="only this split of the dataset (e.g. train)")
    p.add_argument(
        "--lenient",
        action="store_true",
        help="skip and count malformed label lines instead of stopping",
    )


@command(
    "prepare",
    "detect and align a raw dataset once into a compact 112x112 face store",
    _prepare_args,
)
def _prepare(args: argparse.Namespace) -> int:
    from swinface.data import open_dataset
    from swinface.data.prepare import prepare_samples

    dataset = open_dataset(args.format, args.path, strict=not args.lenient, split=args.split)
    _, report = prepare_samples(
        dataset.samples,
        args.out,
        aligned=args.aligned,
        limit=args.limit,
        meta={"dataset_format": args.format, "split": args.split},
    )
    report.label_errors = list(getattr(dataset, "skipped", []))
    print(report.summary())
    return 0


# ---------------------------------------------------------------- evaluate


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "task",
        choices=["verification", "expression", "age", "gender", "attributes", "all"],
        help="what to measure; all: every task the dataset's labels allow",
    )
    p.add_argument(
        "format", help="dataset format, e.g. fer2013-folders, utkface, celeba, lfw-pairs"
    )
    p.add_argument("path", help="the dataset's folder or file")
    _model_args(p)
    p.add_argument(
        "--aligned", action="store_true", help="images are face crops: resize instead of detecting"
    )
    p.add_argument("--out", default=None, help="report folder (default: reports/<format>-<task>)")
    p.add_argument("--split", default=None, help="only this split of the dataset (e.g. val, test)")
    p.add_argument("--limit", type=int, default=None, help="only the first N samples / pairs")
    p.add_argument(
        "--group-by", nargs="*", default=None, help="group labels to break figures down by"
    )
    p.add_argument("--lenient", action="store_true", help="skip and count malformed label lines")


@command("evaluate", "the field's protocols on a dataset; JSON, Markdown and plots", _evaluate_args)
def _evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from swinface.data import open_dataset
    from swinface.evaluate import evaluate, headline, write_report

    dataset = open_dataset(args.format, args.path, strict=not args.lenient, split=args.split)
    analyzer = _analyzer(args)
    report = evaluate(
        args.task, dataset, analyzer, group_by=args.group_by, limit=args.limit, progress=True
    )
    out = Path(args.out or Path("reports") / f"{args.format}-{args.task}")
    files = write_report(report, out)
    print(headline(report))
    print(f"report: {out}/summary.md ({len(files)} files)")
    return 0


# ---------------------------------------------------------------- bench


def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--weights", default=None, help="weights to time (default: random weights, same speed)"
    )
    p.add_argument("--model", default="swinface_t", help="architecture when no weights are named")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument(
        "--backends",
        nargs="+",
        default=None,
        help="eager, compiled, onnxruntime (default: eager and onnxruntime on CPU; "
        "eager and compiled on GPU)",
    )
    p.add_argument(
        "--batches",
        nargs="+",
        type=int,
        default=None,
        help="batch sizes (default: 1 32 on CPU, 1 32 256 1024 on GPU)",
    )
    p.add_argument("--seconds", type=float, default=2.0, help="time each figure over this long")
    p.add_argument("--photo", default=None, help="photo for the end-to-end figure")
    p.add_argument(
        "--train-batch",
        type=int,
        default=None,
        help="images per task in the training figure (default: 32 on GPU, 2 on CPU; 0: skip)",
    )


@command(
    "bench", "faces/s per backend and batch, photos/s end to end, training images/s", _bench_args
)
def _bench(args: argparse.Namespace) -> int:
    import torch

    from swinface import bench
    from swinface.assets import SAMPLE_PHOTO
    from swinface.model import create_model
    from swinface.pipeline import FaceAnalyzer
    from swinface.weights.loading import load_model, resolve_device

    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    if args.weights:
        model = load_model(args.weights, device="cpu")
    else:
        torch.manual_seed(0)  # fixed random weights: one exported ONNX graph, reused
        model = create_model(args.model)
    model.eval()
    backends = args.backends or (["eager", "compiled"] if gpu else ["eager", "onnxruntime"])
    batches = args.batches or ([1, 32, 256, 1024] if gpu else [1, 32])
    print(f"machine: {bench.machine_description(device)}")
    rows = bench.bench_model(model, device, backends, batches, min_seconds=args.seconds)
    print(bench.format_rows(rows), flush=True)
    best = "onnxruntime" if not gpu and "onnxruntime" in backends else "eager"
    analyzer = FaceAnalyzer(model=model, device=str(device), backend=best)
    rows.append(
        bench.bench_pipeline(analyzer, args.photo or SAMPLE_PHOTO, min_seconds=args.seconds)
    )
    train_batch = args.train_batch if args.train_batch is not None else (32 if gpu else 2)
    if train_batch:
        rows.append(bench.bench_training(args.model, device, train_batch))
    print()
    print(bench.format_rows(rows[-2:] if train_batch else rows[-1:]))
    return 0


# ---------------------------------------------------------------- export-onnx


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("weights", help="weights file or registered name")
    p.add_argument("out", help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset")


@command(
    "export-onnx",
    "the whole model, all 43 outputs, as an ONNX graph taking uint8 faces (dynamic batch)",
    _export_args,
)
def _export(args: argparse.Namespace) -> int:
    from swinface.export import export_onnx
    from swinface.weights.loading import load_model

    path = export_onnx(load_model(args.weights, device="cpu"), args.out, opset=args.opset)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.0f} MiB)")
    return 0


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
        "--no-resume",
        action="store_true",
        help="start afresh even if the output folder has checkpoints",
    )
    p.add_argument("--output-dir", default=None, help="override the config's output folder")


@command(
    "train",
    "multi-task training; resumable; multi-GPU and multi-node through torchrun",
    _train_args,
)
def _train(args: argparse.Namespace) -> int:
    from swinface.train.config import load_config
    from swinface.train.trainer import train

    overrides = {"output_dir": args.output_dir} if args.output_dir else None
    config = load_config(args.config, overrides)
    trainer = train(config, resume=not args.no_resume, max_steps=args.max_steps)
    if trainer.env.is_main:
        print(
            f"step {trainer.step} of {config.steps}; checkpoints in {config.output_dir}/checkpoints"
        )
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
    p.add_argument("--max-pixels", type=int, default=40_000_000, help="pixel limit per image")
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
    )
    parser.add_argument("--version", action="version", version=f"swinface {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_arguments, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (tests call this in-process)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from swinface.errors import SwinFaceError

    try:
        return int(args.run(args) or 0)
    except (SwinFaceError, ValueError, FileNotFoundError) as err:
        print(f"swinface {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
