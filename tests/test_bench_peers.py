"""benchmarks/bench_peers.py's label mapping and scoring, against a hand-made confusion matrix (no peers, no data)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
FERPLUS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]


@pytest.fixture(scope="module")
def bench(monkeypatch_module):
    monkeypatch_module.syspath_prepend(str(BENCH))  # its own folder is on sys.path when run as a script (_common)
    spec = importlib.util.spec_from_file_location("bench_peers", BENCH / "bench_peers.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch_module.setitem(sys.modules, "bench_peers", mod)  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_classes_are_ferplus_order(bench):
    assert list(bench.FERPLUS_CLASSES) == FERPLUS


@pytest.mark.parametrize("peer, labels, expected", [
    # face-api's FACE_EXPRESSION_LABELS order
    ("face-api", ["neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised"],
     ["neutral", "happiness", "sadness", "anger", "fear", "disgust", "surprise"]),
    # human's and fer's (oarriaga's FER2013 order)
    ("human", ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"],
     ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]),
    ("fer", ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"],
     ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]),
])
def test_label_mapping(bench, peer, labels, expected):
    mapping = next(p for p in bench.PEERS if p.name == peer).labels
    idx = bench.label_index(labels, mapping)
    assert [FERPLUS[i] for i in idx] == expected
    assert FERPLUS.index("contempt") not in idx  # no peer predicts contempt
    # a one-hot probability row in the peer's order lands on its FERPlus class
    probs = np.eye(len(labels), dtype=np.float32)
    assert [FERPLUS[i] for i in bench.peer_predictions(probs, labels, mapping)] == expected


def test_label_mapping_refuses_unknown_and_colliding_labels(bench):
    with pytest.raises(ValueError, match="contemptuous"):
        bench.label_index(["neutral", "contemptuous"], {"neutral": "neutral"})
    with pytest.raises(ValueError, match="two columns"):
        bench.label_index(["a", "b"], {"a": "neutral", "b": "neutral"})


def _from_confusion(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Targets and predictions whose confusion matrix (rows true) is ``cm``."""
    t, p = [], []
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            t += [i] * int(cm[i, j])
            p += [j] * int(cm[i, j])
    return np.array(t), np.array(p)


def test_score_against_a_hand_made_confusion_matrix(bench):
    # rows true, columns predicted, FERPlus order; contempt is predicted once (on an anger face)
    cm = np.array([
        # neu hap sur sad ang dis fea con
        [8, 1, 0, 1, 0, 0, 0, 0],  # neutral 10: 8 right
        [0, 5, 0, 0, 0, 0, 0, 0],  # happiness 5: 5
        [1, 0, 3, 0, 0, 0, 0, 0],  # surprise 4: 3
        [2, 0, 0, 2, 0, 0, 0, 0],  # sadness 4: 2
        [0, 0, 0, 0, 2, 0, 0, 1],  # anger 3: 2 (one called contempt)
        [0, 0, 0, 0, 1, 1, 0, 0],  # disgust 2: 1
        [0, 0, 1, 0, 0, 0, 1, 0],  # fear 2: 1
        [1, 0, 0, 0, 1, 0, 0, 0],  # contempt 2: 0
    ])
    targets, preds = _from_confusion(cm)
    s = bench.score(targets, preds)
    eight, seven = s["8-class"], s["7-class"]

    assert eight["n"] == 32 and seven["n"] == 30
    assert eight["accuracy"] == pytest.approx(22 / 32)
    assert seven["accuracy"] == pytest.approx(22 / 30)  # the contempt faces leave; the contempt guess stays wrong
    recalls7 = [8 / 10, 5 / 5, 3 / 4, 2 / 4, 2 / 3, 1 / 2, 1 / 2]
    assert seven["mean_class_accuracy"] == pytest.approx(sum(recalls7) / 7)
    assert eight["mean_class_accuracy"] == pytest.approx(sum(recalls7 + [0.0]) / 8)
    assert [eight["per_class_recall"][c] for c in FERPLUS] == pytest.approx(recalls7 + [0.0])
    assert seven["per_class_recall"]["contempt"] is None
    assert np.array_equal(eight["confusion_matrix"], cm)
    cm7 = cm.copy()
    cm7[-1] = 0
    assert np.array_equal(seven["confusion_matrix"], cm7)

    # the table row reads the same numbers, in percent
    row = bench.row_of({"model": "m"}, s)
    assert row["acc7"] == pytest.approx(100 * 22 / 30) and row["acc8"] == pytest.approx(100 * 22 / 32)
    assert row["recall"]["anger"] == pytest.approx(100 * 2 / 3) and row["support"]["contempt"] == 2


def test_peer_probabilities_scored_end_to_end(bench):
    # fer's order: angry, disgust, fear, happy, sad, surprise, neutral; three faces, two right
    mapping = next(p for p in bench.PEERS if p.name == "fer").labels
    labels = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    probs = np.array([[0.1, 0, 0, 0.8, 0, 0, 0.1],   # happy   -> happiness
                      [0, 0, 0, 0, 0.3, 0, 0.7],     # neutral -> neutral
                      [0.6, 0, 0, 0, 0.4, 0, 0]])    # angry   -> anger
    targets = np.array([FERPLUS.index("happiness"), FERPLUS.index("neutral"), FERPLUS.index("sadness")])
    s = bench.score(targets, bench.peer_predictions(probs, labels, mapping))
    assert s["7-class"]["accuracy"] == pytest.approx(2 / 3)
    assert s["7-class"]["confusion_matrix"][FERPLUS.index("sadness")][FERPLUS.index("anger")] == 1


def test_missing_peers_are_skipped_with_the_install_line(bench, tmp_path):
    for peer in bench.PEERS:
        why = bench.missing(peer, tmp_path / "no-cache")
        assert why is not None  # (node missing or the cache missing)
        assert peer.setup.startswith("bash scripts/setup_peers.sh")


def test_runs_without_data(tmp_path):
    # no FERPlus: the script says so and exits 0 (run_all.py counts on it)
    out = subprocess.run([sys.executable, str(BENCH / "bench_peers.py"), "--data", str(tmp_path / "none")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "skipped: no FERPlus data" in out.stdout
