"""The video parts of the command line: `analyze` on video files, and `watch`.

Kept apart from `swinface.cli` so that the main CLI only routes to them;
importing this module is light (everything heavy loads inside the functions).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from swinface.video.formats import VIDEO_SUFFIXES, is_video_path


def split_videos(paths: Sequence[str]) -> tuple[list[str], list[str]]:
    """(photos, videos) of the inputs, videos told by their suffix."""
    return [p for p in paths if not is_video_path(p)], [p for p in paths if is_video_path(p)]


def _add_tracking_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("video tracking")
    g.add_argument(
        "--max-gap",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="a face unseen this long ends its track (default 2)",
    )
    g.add_argument(
        "--min-frames",
        type=int,
        default=2,
        help="tracks seen in fewer analysed frames are dropped as false detections (default 2)",
    )
    g.add_argument(
        "--reid-similarity",
        type=float,
        default=0.5,
        help="cosine similarity that re-identifies a face by appearance alone (default 0.5)",
    )
    g.add_argument("--frames", action="store_true", help="also write one record per analysed frame")
    g.add_argument("--crops", metavar="DIR", help="save each track's best face crop here (JPEG)")
    g.add_argument(
        "--known", metavar="FOLDER", help="identify tracks against FOLDER/<person>/<photos>"
    )
    g.add_argument(
        "--known-threshold",
        type=float,
        default=None,
        help="cosine threshold for a known person; default: the one stored with the weights",
    )


def add_video_options(p: argparse.ArgumentParser) -> None:
    """The options `analyze` takes for video inputs."""
    _add_tracking_options(p)
    g = p.add_argument_group("video sampling")
    g.add_argument("--every", type=int, default=1, metavar="N", help="analyse every N-th frame")
    g.add_argument(
        "--fps",
        type=float,
        default=None,
        metavar="F",
        help="analyse F frames per second of video (overrides --every)",
    )


def add_watch_options(p: argparse.ArgumentParser) -> None:
    """The options of `watch`, beside the model and detector ones."""
    p.add_argument("source", help="a camera index (0), an RTSP/HTTP stream URL, or a video file")
    _add_tracking_options(p)
    p.add_argument(
        "--reconnect",
        type=int,
        default=5,
        help="times to reopen a stream that drops before giving up (default 5)",
    )
    p.add_argument(
        "--as-fast-as-possible",
        action="store_true",
        help="read a file as fast as it decodes instead of at its own frame rate",
    )


def _tracker_config(args: argparse.Namespace):
    from swinface.video.tracker import TrackerConfig

    return TrackerConfig(
        max_gap=args.max_gap, min_frames=args.min_frames, reid_similarity=args.reid_similarity
    )


def _known(analyzer, args: argparse.Namespace):
    if not args.known:
        return None
    from swinface.video.known import KnownFaces

    threshold = args.known_threshold
    if threshold is None:
        threshold = analyzer.verify_threshold
    if threshold is None:
        raise ValueError("these weights carry no verification threshold: pass --known-threshold")
    return KnownFaces.from_folder(analyzer, args.known, threshold)


def _emit(record: dict) -> None:
    # allow_nan=False: the output is strict JSON; a NaN would be a bug, not a value.
    print(json.dumps(record, allow_nan=False), flush=True)


def _annotate_target(annotate: str | None, video: str, count: int) -> Path | None:
    """`--annotate OUT.mp4` for one video; a folder gets `<stem>.mp4` per video."""
    if not annotate:
        return None
    target = Path(annotate)
    if target.suffix.lower() in VIDEO_SUFFIXES:
        if count > 1:
            raise ValueError(f"--annotate {annotate}: name a folder to annotate {count} videos")
        return target
    return target / (Path(video).stem + ".mp4")


def analyze_videos(analyzer, videos: Sequence[str], args: argparse.Namespace) -> int:
    """`swinface analyze` on video files: JSON Lines on stdout; returns how many failed."""
    from swinface.progress import Progress
    from swinface.video.analyze import FrameResult, VideoSummary, analyze_video
    from swinface.video.source import VideoError, VideoFile
    from swinface.video.summary import TrackResult

    tracker, known = _tracker_config(args), _known(analyzer, args)
    failed: list[str] = []
    for video in videos:
        try:
            probe = VideoFile(video)
            total = probe.frame_count
            probe.close()
        except VideoError:
            total = None  # reported below, by the same code path as every other error
        progress = Progress(total, Path(video).name, "frame")
        events = analyze_video(
            analyzer,
            video,
            every=args.every,
            fps=args.fps,
            tracker=tracker,
            known=known,
            crops=args.crops,
            annotate=_annotate_target(args.annotate, video, len(videos)),
        )
        for event in events:
            if isinstance(event, FrameResult):
                progress.update(event.index + 1 - progress.count)
                if args.frames:
                    _emit(event.to_dict(include_embedding=args.embeddings))
            elif isinstance(event, TrackResult):
                _emit(event.to_dict(include_embedding=args.embeddings))
            elif isinstance(event, VideoSummary):
                progress.update(max(0, event.frames_read - progress.count))
                progress.close()
                _report(event, failed)
    for error in failed:
        print(f"  failed: {error}", file=sys.stderr)
    return len(failed)


def _report(summary, failed: list[str]) -> None:
    if summary.error is not None:
        _emit({"source": summary.source, "error": summary.error})  # as a bad photo is reported
        failed.append(summary.error)
    dropped = f", {summary.frames_dropped} dropped to keep up" if summary.frames_dropped else ""
    print(
        f"{summary.source}: {summary.frames_read} frame(s) read, {summary.frames_analysed} "
        f"analysed{dropped}, {summary.tracks} track(s)",
        file=sys.stderr,
    )


def run_watch(analyzer, args: argparse.Namespace) -> int:
    """`swinface watch`: tracks printed as they close; Ctrl-C stops and writes the open ones."""
    from swinface.video.analyze import FrameResult, VideoSummary, watch
    from swinface.video.summary import TrackResult

    stop = threading.Event()
    handlers = {}

    def on_signal(signum, frame) -> None:
        if stop.is_set():  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        print("stopping: closing open tracks (Ctrl-C again to abort)", file=sys.stderr)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            handlers[sig] = signal.signal(sig, on_signal)
    failed: list[str] = []
    try:
        events = watch(
            analyzer,
            args.source,
            tracker=_tracker_config(args),
            known=_known(analyzer, args),
            crops=args.crops,
            stop=stop,
            reconnect=args.reconnect,
            realtime=False if args.as_fast_as_possible else None,
        )
        for event in events:
            if isinstance(event, TrackResult) or (args.frames and isinstance(event, FrameResult)):
                _emit(event.to_dict(include_embedding=args.embeddings))
            elif isinstance(event, VideoSummary):
                _report(event, failed)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return 1 if failed else 0


def add_bench_options(p: argparse.ArgumentParser) -> None:
    """The options of `bench-video`."""
    p.add_argument(
        "--weights", default=None, help="weights to time (default: deterministic swinface_t)"
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "eager", "compiled", "onnxruntime", "openvino"],
        help="how the model runs; auto: OpenVINO bf16 or ONNX Runtime on CPU, PyTorch on GPU",
    )
    p.add_argument(
        "--resolutions", nargs="+", default=["720p", "1080p"], choices=["480p", "720p", "1080p"]
    )
    p.add_argument("--faces", nargs="+", type=int, default=[1, 5], help="faces per frame")
    p.add_argument(
        "--settings",
        nargs="+",
        default=["every=1", "fps=5", "fps=2", "fps=1"],
        help="frame sampling settings to time: every=N or fps=F",
    )
    p.add_argument("--seconds", type=float, default=2.0, help="length of each test video")
    p.add_argument(
        "--live-fps", type=float, default=25.0, help="the live frame rate to keep up with"
    )


def run_bench(args: argparse.Namespace) -> int:
    """`swinface bench-video`: prints one row per case as it is measured."""
    from swinface.bench import machine_description
    from swinface.pipeline import FaceAnalyzer
    from swinface.video.bench import HEADER, bench_video
    from swinface.weights.loading import load_model, resolve_device

    device = resolve_device(args.device)
    if args.weights:
        model = load_model(args.weights, device="cpu")
    else:  # same architecture and speed as the published weights; no download needed
        from swinface.weights.synthetic import deterministic_model

        model = deterministic_model()
    analyzer = FaceAnalyzer(model=model, device=str(device), backend=args.backend)
    import os

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    # The load average says whether other work shared the cores while timing.
    print(
        f"machine: {machine_description(device)}; backend {analyzer.runner.backend.name}; "
        f"load average {load:.1f} before the run"
    )
    print(HEADER, flush=True)
    bench_video(
        analyzer,
        resolutions=args.resolutions,
        faces=args.faces,
        settings=args.settings,
        seconds=args.seconds,
        fps=args.live_fps,
        progress=True,
    )
    return 0
