"""Reports written from synthetic results, and the runner driven by a fake analyzer."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pytest
from PIL import Image

from swinface.data.samples import Pair, Sample
from swinface.decode import FaceAttributes
from swinface.evaluate import (
    EvaluationReport,
    Failure,
    age_metrics,
    attribute_metrics,
    by_group,
    classification_metrics,
    evaluate,
    headline,
    verification_metrics,
    write_report,
)
from swinface.evaluate.report import figures
from swinface.pipeline import Face, PhotoResult
from swinface.tasks import CELEBA_ATTRIBUTES, EXPRESSION_LABELS, GENDER_LABELS

RNG_SEED = 0


def _verification_report() -> EvaluationReport:
    rng = np.random.default_rng(RNG_SEED)
    same = np.arange(600) % 2 == 0
    scores = np.clip(rng.normal(0.2, 0.12, 600) + 0.45 * same, -1, 1)
    return EvaluationReport(
        dataset="synthetic pairs",
        task="verification",
        weights="conformance",
        n_pairs=600,
        n_images=1100,
        failures=[Failure("a.jpg", "no face found")],
        verification=verification_metrics(scores, same),
    )


def _classes_report() -> EvaluationReport:
    rng = np.random.default_rng(RNG_SEED)
    true = rng.integers(0, 7, 300)
    pred = np.where(rng.random(300) < 0.7, true, rng.integers(0, 7, 300))
    g_true = rng.integers(0, 2, 300)
    g_pred = np.where(rng.random(300) < 0.9, g_true, 1 - g_true)
    race = rng.choice(["Asian", "Black", "White"], 300)
    acc = lambda p, t: classification_metrics(p, t, GENDER_LABELS).accuracy  # noqa: E731
    return EvaluationReport(
        dataset="synthetic faces",
        task="all",
        n_samples=300,
        n_images=300,
        expression=classification_metrics(pred, true, EXPRESSION_LABELS),
        gender=classification_metrics(g_pred, g_true, GENDER_LABELS),
        groups=[by_group(acc, race, g_pred, g_true, metric="accuracy", key="race", task="gender")],
    )


def _age_report() -> EvaluationReport:
    rng = np.random.default_rng(RNG_SEED)
    true = rng.uniform(1, 90, 400)
    pred = true + rng.normal(1.0, 5.0, 400)
    std = rng.uniform(2, 6, 400)
    race = rng.choice(["Asian", "Black", "Indian", "Others", "White"], 400)
    mae = lambda p, t: age_metrics(p, t).mae  # noqa: E731
    return EvaluationReport(
        dataset="synthetic ages",
        task="age",
        n_samples=400,
        n_images=400,
        skipped=["labels.csv:3: age is not a number"],
        age=age_metrics(pred, true, std),
        groups=[
            by_group(
                mae, race, pred, true, metric="MAE", key="race", task="age", higher_is_better=False
            )
        ],
    )


def _attributes_report() -> EvaluationReport:
    rng = np.random.default_rng(RNG_SEED)
    true = rng.integers(0, 2, (200, 40))
    true[:20, 5] = -1
    prob = np.clip(true + rng.normal(0, 0.4, true.shape), 0, 1)
    return EvaluationReport(
        dataset="synthetic attributes",
        task="attributes",
        n_samples=200,
        n_images=200,
        attributes=attribute_metrics(prob, true),
    )


REPORTS = {
    "verification": (_verification_report, ["roc.png"]),
    "classes": (
        _classes_report,
        ["confusion_expression.png", "confusion_gender.png", "group_gender_accuracy_by_race.png"],
    ),
    "age": (_age_report, ["age_error.png", "age_scatter.png", "group_age_mae_by_race.png"]),
    "attributes": (_attributes_report, ["attributes.png"]),
}


@pytest.mark.parametrize("kind", list(REPORTS))
def test_write_report_files(kind, tmp_path):
    make, pngs = REPORTS[kind]
    report = make()
    written = write_report(report, tmp_path / "out")
    names = sorted(p.name for p in written)
    assert names == sorted(["report.json", "summary.md", *pngs])
    for path in written:
        assert path.is_file() and path.stat().st_size > 0
        if path.suffix == ".png":
            with Image.open(path) as im:
                im.load()  # decodes the whole image: a truncated file fails here
                assert im.format == "PNG"
                assert im.width >= 400 and im.height >= 300

    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data == json.loads(json.dumps(report.to_dict()))
    assert data["dataset"] == report.dataset
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert f"# SwinFace evaluation: {report.dataset}" in summary
    for _, _, value in figures(report):
        assert value in summary
    for png in pngs:
        assert f"({png})" in summary  # linked from the summary
    text = headline(report)
    assert all(value in text for _, _, value in figures(report))


def test_report_json_numbers():
    report = _verification_report()
    v = report.verification
    data = json.loads(json.dumps(report.to_dict()))
    assert data["verification"]["kfold"]["accuracy"] == v.kfold.accuracy
    assert data["verification"]["kfold"]["fold_thresholds"] == v.kfold.fold_thresholds
    assert data["verification"]["auc"] == v.auc
    assert data["verification"]["tar_at_far"]["0.001"]["tar"] == v.tar_at_far[1e-3].tar
    assert data["verification"]["tar_at_far"]["1e-06"]["tar"] is None
    assert data["failures"] == [{"source": "a.jpg", "reason": "no face found"}]
    report = _age_report()
    data = json.loads(json.dumps(report.to_dict()))
    assert data["age"]["mae"] == report.age.mae
    assert data["age"]["epsilon_error"] == report.age.epsilon_error
    assert data["groups"][0]["gap"] == report.groups[0].gap


def test_summary_tables(tmp_path):
    summary = (write_report(_verification_report(), tmp_path / "v")[1]).read_text()
    assert summary.count("\n| 10 | 60 |") == 1  # ten folds of 60 pairs
    assert "needs at least 1000000 different-person pairs, have 300" in summary
    summary = (write_report(_age_report(), tmp_path / "a")[1]).read_text()
    assert "| Race | Faces | MAE |" in summary and "\nGap " in summary
    assert "| Label lines skipped by the reader | 1 |" in summary
    assert "- labels.csv:3: age is not a number" in summary
    assert "(highest Asian, lowest White)" in summary  # group names keep their case
    summary = (write_report(_classes_report(), tmp_path / "c")[1]).read_text()
    assert "| happiness |" in summary


# ---------------------------------------------------------------- the runner


def _attrs(i: int, age: float, gender: str, expression: str, embedding: np.ndarray):
    probs = {e: (0.9 if e == expression else 0.1 / 6) for e in EXPRESSION_LABELS}
    return FaceAttributes(
        age=age,
        gender=gender,
        gender_probability=0.9,
        expression=expression,
        expression_probabilities=probs,
        attributes={a: float(i % 2) for a in CELEBA_ATTRIBUTES},
        embedding=(embedding / np.linalg.norm(embedding)).astype(np.float32),
    )


class FakeAnalyzer:
    """Reads a face's identity from its first pixel; pixel 255 means no face, a str is unreadable."""

    aligned = True

    def __init__(self, predictions: dict[int, FaceAttributes]) -> None:
        self.predictions = predictions
        self.seen: list = []

    def analyze_many(self, sources):
        for index, source in enumerate(sources):
            self.seen.append(source)
            if isinstance(source, str):
                yield PhotoResult(source, error=f"cannot read {source}")
                continue
            result = PhotoResult(f"<input {index}>", width=112, height=112)
            key = int(source[0, 0, 0])
            if key != 255:
                face = Face((0, 0, 112, 112), np.zeros((5, 2)), 1.0, self.predictions[key])
                result.faces.append(face)
            yield result


@dataclass
class FakeDataset:
    name: str
    samples: list = field(default_factory=list)
    pairs: list = field(default_factory=list)
    skipped: list = field(default_factory=list)


def _image(key: int) -> np.ndarray:
    return np.full((112, 112, 3), key, np.uint8)


def test_runner_counts_failures_and_scores_the_rest(tmp_path):
    # Six readable faces with known predictions, one unreadable file, one image with no face.
    true_age = [20, 30, 40, 50, 60, 70]
    pred_age = [22, 30, 35, 50, 61, 80]  # errors 2, 0, 5, 0, 1, 10
    true_gender = [0, 1, 0, 1, 0, 1]
    pred_gender = ["female", "male", "male", "male", "female", "female"]  # 4 / 6 right
    true_expr = [3, 3, 6, 6, 4, 0]
    pred_expr = ["happiness", "happiness", "neutral", "sadness", "sadness", "surprise"]  # 5 / 6
    race = ["Asian", "Asian", "White", "White", "Black", "Black"]
    predictions = {
        i: _attrs(i, pred_age[i], pred_gender[i], pred_expr[i], np.eye(8)[i]) for i in range(6)
    }
    samples = [
        Sample(
            _image(i),
            source=f"utk:{i}",
            age=true_age[i],
            gender=true_gender[i],
            expression=true_expr[i],
            groups={"race": race[i]},
        )
        for i in range(6)
    ]
    samples.append(
        Sample("missing.jpg", source="utk:6", age=33, gender=0, groups={"race": "Asian"})
    )
    samples.append(Sample(_image(255), source="utk:7", age=44, gender=1, groups={"race": "White"}))
    dataset = FakeDataset("tiny", samples, skipped=["labels.csv:9: bad age"])
    analyzer = FakeAnalyzer(predictions)

    report = evaluate("all", dataset, analyzer, out_dir=tmp_path, progress=False)

    assert report.tasks_done == ["expression", "age", "gender"]
    assert report.n_images == 8 and report.n_samples == 8
    assert sorted(f.source for f in report.failures) == ["missing.jpg", "utk:7"]
    assert {f.reason for f in report.failures} == {
        "unreadable: cannot read missing.jpg",
        "no face found",
    }
    assert report.age.n == 6 and report.age.mae == pytest.approx(18 / 6)
    assert report.age.cs == pytest.approx(5 / 6)
    assert report.gender.accuracy == pytest.approx(4 / 6)
    assert report.expression.accuracy == pytest.approx(5 / 6)
    assert report.skipped == ["labels.csv:9: bad age"]
    by_key = {(g.task, g.key): g for g in report.groups}
    age_race = by_key[("age", "race")]
    # MAE per race: Asian (2, 0) -> 1; White (5, 0) -> 2.5; Black (1, 10) -> 5.5.
    assert {k: v.value for k, v in age_race.groups.items()} == pytest.approx(
        {"Asian": 1.0, "Black": 5.5, "White": 2.5}
    )
    assert (age_race.highest, age_race.lowest, age_race.gap) == ("Black", "Asian", 4.5)
    assert age_race.groups["Asian"].n == 2  # the unreadable Asian sample is not counted

    summary = (tmp_path / "summary.md").read_text()
    assert (
        "2 images failed" in summary and "2 images left out" in summary and "missing.jpg" in summary
    )
    assert (tmp_path / "report.json").is_file() and (tmp_path / "age_error.png").is_file()
    assert "age MAE" in headline(report)


def test_runner_verification_deduplicates_and_drops_failed_pairs():
    # Three identities, two images each (keys 0..5; identity = key // 2); plus an unreadable file.
    embeddings = {k: np.eye(3)[k // 2] + 0.1 * np.eye(3)[(k + 1) % 3] for k in range(6)}
    predictions = {k: _attrs(k, 30, "male", "neutral", e) for k, e in embeddings.items()}
    images = [_image(k) for k in range(6)]
    pairs = []
    for k in range(6):
        for j in range(k + 1, 6):
            pairs.append(Pair(images[k], images[j], same=k // 2 == j // 2, source=f"p{k}{j}"))
    pairs.append(Pair(images[0], "gone.jpg", same=True, source="pbad"))
    dataset = FakeDataset("pairs", pairs=pairs)
    analyzer = FakeAnalyzer(predictions)

    report = evaluate("verification", dataset, analyzer, progress=False)

    assert len(analyzer.seen) == 7  # six arrays and one path, each run once
    assert report.n_pairs == 16 and report.n_images == 7
    assert [f.source for f in report.failures] == ["gone.jpg"]
    v = report.verification
    assert v.kfold.n_pairs == 15 and v.kfold.n_same == 3
    assert v.auc == 1.0 and v.best_accuracy == 1.0
    assert any("1 of 16 pairs" in n for n in report.notes)


def test_runner_rejects_missing_labels_and_unknown_tasks():
    dataset = FakeDataset("ages", samples=[Sample(_image(0), age=30)])
    with pytest.raises(ValueError, match="no verification pairs"):
        evaluate("verification", dataset, FakeAnalyzer({}), progress=False)
    with pytest.raises(ValueError, match="no expression labels"):
        evaluate("expression", dataset, FakeAnalyzer({}), progress=False)
    with pytest.raises(ValueError, match="unknown task"):
        evaluate("beauty", dataset, FakeAnalyzer({}), progress=False)


def test_runner_notes_what_it_could_not_measure():
    # Every age image fails, and only three pairs survive: both are noted, nothing is faked.
    predictions = {k: _attrs(k, 30, "male", "neutral", np.eye(4)[k]) for k in range(4)}
    images = [_image(k) for k in range(4)]
    pairs = [Pair(images[0], images[1], True), Pair(images[2], images[3], False)]
    pairs.append(Pair(images[0], images[2], False))
    samples = [Sample("gone.jpg", age=30), Sample(_image(255), age=40)]
    report = evaluate(
        "all", FakeDataset("d", samples, pairs), FakeAnalyzer(predictions), progress=False
    )
    assert report.verification is None and report.age is None
    assert len(report.failures) == 2
    assert any(n.startswith("verification: not measured, 3 pairs") for n in report.notes)
    assert "age: not measured, no labelled image gave a face" in report.notes
    assert "note: age: not measured" in headline(report)


def test_runner_limit_and_group_by():
    predictions = {i: _attrs(i, 30, "female", "neutral", np.eye(4)[i]) for i in range(4)}
    samples = [
        Sample(_image(i), age=30 + i, groups={"race": "A" if i % 2 else "B", "gender": "x"})
        for i in range(4)
    ]
    report = evaluate(
        "age",
        FakeDataset("d", samples),
        FakeAnalyzer(predictions),
        group_by=["race"],
        limit=3,
        progress=False,
    )
    assert report.age.n == 3
    assert [(g.task, g.key) for g in report.groups] == [("age", "race")]


def test_runner_with_the_real_pipeline(tmp_path):
    """The real FaceAnalyzer on aligned crops: an unreadable file is counted, the rest scored."""
    torch = pytest.importorskip("torch")
    from swinface.model import create_model
    from swinface.pipeline import FaceAnalyzer

    with torch.random.fork_rng():  # seeded without changing the global generator
        torch.manual_seed(0)
        model = create_model("swinface_nano")  # small and random: checks plumbing, not accuracy
    analyzer = FaceAnalyzer(model=model, aligned=True, device="cpu", batch_size=4)
    yielded: list[PhotoResult] = []
    analyze_many = analyzer.analyze_many

    def spy(sources):
        for result in analyze_many(sources):
            yielded.append(result)
            yield result

    analyzer.analyze_many = spy
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(5)]
    samples = [
        Sample(c, source=f"crop {i}", age=20 + 10 * i, gender=i % 2) for i, c in enumerate(crops)
    ]
    samples.insert(2, Sample(str(tmp_path / "missing.jpg"), age=30, gender=0))

    report = evaluate("all", FakeDataset("crops", samples), analyzer, progress=False)

    assert report.tasks_done == ["age", "gender"]
    assert len(report.failures) == 1 and report.failures[0].reason.startswith("unreadable")
    assert report.failures[0].source.endswith("missing.jpg")
    assert report.age.n == 5 and report.gender.n == 5
    ages = [r.main_face().analysis.age for r in yielded if r.ok]
    np.testing.assert_allclose(report.age.pred, ages)
    np.testing.assert_allclose(report.age.true, [20, 30, 40, 50, 60])


# ---------------------------------------------------------------- honest slices


def _one_hot_attrs(key: int, expression: str, embedding: np.ndarray) -> FaceAttributes:
    return _attrs(key, 30, "female", expression, embedding)


def test_limit_draws_every_class_from_a_class_sorted_dataset():
    # Sorted by class as FER2013 folders are: the first 14 images would all be "anger".
    predictions = {
        k: _one_hot_attrs(k, EXPRESSION_LABELS[k // 20], np.eye(8)[k % 8]) for k in range(140)
    }
    samples = [Sample(_image(k), source=f"img {k}", expression=k // 20) for k in range(140)]
    dataset = FakeDataset("sorted", samples)
    report = evaluate("expression", dataset, FakeAnalyzer(predictions), limit=14, progress=False)
    assert report.n_samples == 14
    assert set(report.expression.class_counts.values()) == {2}  # 2 of each of the 7 classes
    assert report.settings["seed"] == 0
    again = evaluate("expression", dataset, FakeAnalyzer(predictions), limit=14, progress=False)
    assert report.expression.to_dict() == again.expression.to_dict()  # the seed is fixed
    other = FakeAnalyzer(predictions)
    evaluate("expression", dataset, other, limit=14, seed=5, progress=False)
    first = FakeAnalyzer(predictions)
    evaluate("expression", dataset, first, limit=14, progress=False)
    keys = [[int(img[0, 0, 0]) for img in a.seen] for a in (first, other)]
    assert keys[0] != keys[1]  # another seed, another draw


def test_limit_on_pairs_keeps_both_kinds_and_warns_on_one_class(caplog):
    images = [_image(k) for k in range(8)]
    predictions = {k: _attrs(k, 30, "male", "neutral", np.eye(8)[k // 2]) for k in range(8)}
    same = [Pair(images[2 * i], images[2 * i + 1], True, f"s{i}") for i in range(4)]
    different = [Pair(images[i], images[(i + 2) % 8], False, f"d{i}") for i in range(8)]
    dataset = FakeDataset("pairs", pairs=same * 5 + different * 5)  # same-person pairs first
    report = evaluate("verification", dataset, FakeAnalyzer(predictions), limit=30, progress=False)
    assert report.n_pairs == 30 and report.verification.kfold.n_same == 10
    assert not any("only" in n for n in report.notes)

    one_class = FakeDataset("happy", [Sample(_image(k), expression=3) for k in range(4)])
    with caplog.at_level("WARNING", logger="swinface.evaluate.runner"):
        report = evaluate("expression", one_class, FakeAnalyzer(predictions), progress=False)
    assert "expression: every image is of one class (happiness)" in report.notes
    assert "one class" in caplog.text
    report = evaluate("verification", FakeDataset("p", pairs=same), FakeAnalyzer(predictions))
    assert "verification: only same-person pairs in this set" in report.notes


def test_pairs_without_folds_get_balanced_random_folds():
    # 30 same-person pairs, then 70 different ones: consecutive folds are 3 all-same, 7 all-
    # different, and every test fold is scored with a threshold that suits only the other kind.
    rng = np.random.default_rng(0)
    predictions = {k: _attrs(k, 30, "male", "neutral", rng.normal(size=16)) for k in range(100)}
    images = [_image(k) for k in range(100)]
    pairs = [Pair(images[i], images[(i + 1) % 100], i < 30, f"p{i}") for i in range(100)]
    report = evaluate("verification", FakeDataset("sorted", pairs=pairs), FakeAnalyzer(predictions))
    k = report.verification.kfold
    assert k.fold_sizes == [10] * 10
    assert any("drew 10 folds at random (seed 0)" in n for n in report.notes)
    assert not any("hold only one kind" in n for n in report.notes)


def test_dataset_folds_are_kept_and_one_kind_folds_warned():
    # LFW's pairs.txt defines folds: they are kept as they are, and a one-kind fold is named.
    predictions = {k: _attrs(k, 30, "male", "neutral", np.eye(20)[k // 2]) for k in range(40)}
    images = [_image(k) for k in range(40)]
    pairs = [
        Pair(images[i], images[i + 1 if i % 2 == 0 else i - 1], True, f"s{i}", fold=i % 4)
        for i in range(20)
    ]
    pairs += [
        Pair(images[i], images[(i + 2) % 40], False, f"d{i}", fold=1 + i % 3) for i in range(20)
    ]
    report = evaluate("verification", FakeDataset("lfw", pairs=pairs), FakeAnalyzer(predictions))
    assert report.verification.kfold.fold_sizes == [5, 12, 12, 11]
    assert any(
        n.startswith("verification: fold(s) 1 hold only one kind of pair") for n in report.notes
    )


def test_negative_age_predictions_are_shown_not_clipped(tmp_path):
    from swinface.evaluate.report import age_scatter_limits

    a = age_metrics([-3.5, 4, 30], [1, 2, 33])
    lo, hi = age_scatter_limits(a)
    assert lo < -3.5 and hi > 33
    write_report(EvaluationReport(dataset="babies", task="age", n_images=3, age=a), tmp_path)
    assert "| Predictions below 0 years | 1 |" in (tmp_path / "summary.md").read_text()


def test_attribute_report_shows_the_majority_rate(tmp_path):
    true = np.zeros((10, 40), np.int64)
    true[0] = 1  # every attribute present on one face of ten
    a = attribute_metrics(np.zeros((10, 40)), true)  # always "no"
    write_report(EvaluationReport(dataset="celeba", task="attributes", attributes=a), tmp_path)
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["attributes"]["majority_rate"]["Mustache"] == pytest.approx(0.9)
    assert data["attributes"]["mean_majority_rate"] == pytest.approx(0.9)
    summary = (tmp_path / "summary.md").read_text()
    assert "| Mustache | 10 | 90.00% | 90.00% | +0.00 |" in summary
    assert "against 90.00% for always giving each attribute's commoner answer" in summary
    assert ("attributes", "mean majority-class rate (always the commoner answer)", "90.00%") in (
        figures(EvaluationReport(dataset="c", task="attributes", attributes=a))
    )
    assert (tmp_path / "attributes.png").is_file()


# ---------------------------------------------------------------- flip (the paper's protocol)


@pytest.fixture(scope="module")
def nano_analyzer():
    torch = pytest.importorskip("torch")
    from swinface.model import create_model
    from swinface.pipeline import FaceAnalyzer

    with torch.random.fork_rng():  # seeded without changing the global generator
        torch.manual_seed(0)
        model = create_model("swinface_nano").eval()  # random: checks the protocol, not accuracy
    return FaceAnalyzer(model=model, aligned=True, device="cpu", backend="eager", batch_size=8)


def test_flip_embedding_is_the_normalised_sum_with_the_mirrored_face(nano_analyzer):
    from swinface.evaluate.flip import with_flip
    from swinface.tasks import RECOGNITION

    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    runner = nano_analyzer.runner
    plain = runner.analyze(crops)
    mirrored = runner.analyze(np.ascontiguousarray(crops[:, :, ::-1])).raw[RECOGNITION.name]
    expected = plain.raw[RECOGNITION.name] + mirrored
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)

    results = [r.main_face().analysis for r in with_flip(nano_analyzer).analyze_many(crops)]
    got = np.stack([face.embedding for face in results])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    single = np.stack([face.embedding for face in plain.faces])
    assert np.abs(got - single).max() > 1e-3  # the flip changes the embeddings used
    # The other outputs are the face's own, not the mirror's.
    assert [f.age for f in results] == pytest.approx([f.age for f in plain.faces], rel=1e-4)
    assert nano_analyzer.runner is runner  # the caller's analyzer is left as it was


def test_verification_reports_which_embeddings_it_used(nano_analyzer, tmp_path):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(12)]
    pairs = [Pair(images[i], images[(i + 1) % 12], i % 2 == 0, f"p{i}") for i in range(12)]
    dataset = FakeDataset("pairs", pairs=pairs)

    paper = evaluate("verification", dataset, nano_analyzer, out_dir=tmp_path, progress=False)
    single = evaluate("verification", dataset, nano_analyzer, flip=False, progress=False)

    assert paper.settings["flip"] is True and single.settings["flip"] is False
    assert paper.verification.roc.thresholds[1:].tolist() != pytest.approx(
        single.verification.roc.thresholds[1:].tolist()
    )  # other embeddings, other scores
    summary = (tmp_path / "summary.md").read_text()
    assert "plus its horizontally mirrored face's, normalised (the paper's protocol)" in summary
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["settings"]["flip"] is True
    assert {
        "task": "verification",
        "metric": "embeddings",
        "value": "face + mirrored face (flip)",
    } in data["headline"]
    assert "face alone (no flip)" in headline(single)


def test_flip_needs_an_analyzer_that_can_mirror_faces():
    predictions = {k: _attrs(k, 30, "male", "neutral", np.eye(4)[k]) for k in range(4)}
    images = [_image(k) for k in range(4)]
    pairs = [Pair(images[k], images[(k + 1) % 4], k % 2 == 0) for k in range(4)] * 3
    dataset = FakeDataset("pairs", pairs=pairs)
    report = evaluate("verification", dataset, FakeAnalyzer(predictions), progress=False)
    assert report.settings["flip"] is False
    assert any("single-image embeddings" in n for n in report.notes)
    with pytest.raises(ValueError, match="flip: FakeAnalyzer cannot run mirrored faces"):
        evaluate("verification", dataset, FakeAnalyzer(predictions), flip=True, progress=False)
