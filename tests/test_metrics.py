"""Classifier-based metrics: class accuracy and Frechet distance (course_utils.metrics)."""
from __future__ import annotations

import pytest
import torch

from course_utils import metrics
from course_utils.data import load_mnist
from course_utils.metrics import (MNISTClassifier, class_accuracy, class_histogram, features, frechet_distance,
                                  frechet_floor, gaussian_stats, predict)
from course_utils.paths import data_dir

N = 256   # images per set: small, so the whole file runs in seconds


@pytest.fixture(scope="module")
def clf() -> MNISTClassifier:
    if not (data_dir() / "classifier.pt").exists():
        pytest.skip("data/classifier.pt (the shipped metric classifier) is absent; train it with "
                    "metrics.get_classifier() first")
    return metrics.get_classifier()


def _feats(n: int = 300, d: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.randn(d, d, generator=g, dtype=torch.float64)


def test_frechet_of_a_set_with_itself_is_zero():
    f = _feats()
    assert abs(frechet_distance(f, f)) < 1e-8


def test_frechet_closed_forms():
    f = _feats()
    shift = torch.tensor([1.0, -2.0, 0.0, 0.5, 0.0, 3.0], dtype=torch.float64)
    assert frechet_distance(f, f + shift) == pytest.approx(float(shift.square().sum()), rel=1e-6)
    c = f - f.mean(0)                                   # zero mean: FD(c, 2c) = Tr(S + 4S - 4S) = Tr(S)
    _, s = gaussian_stats(c)
    assert frechet_distance(c, 2 * c) == pytest.approx(float(torch.trace(s)), rel=1e-6)
    assert frechet_distance(f, _feats(seed=1)) == pytest.approx(frechet_distance(_feats(seed=1), f), rel=1e-6)


def test_gaussian_stats():
    f = _feats(50, 4)
    mu, cov = gaussian_stats(f)
    assert mu.shape == (4,) and cov.shape == (4, 4) and cov.dtype == torch.float64
    assert torch.allclose(cov, torch.cov(f.T), atol=1e-10)
    for bad in (torch.zeros(10), torch.zeros(1, 4), torch.zeros(2, 3, 4)):
        with pytest.raises(ValueError, match="N >= 2, D"):
            gaussian_stats(bad)


def test_wrong_image_shape_or_dtype():
    model = MNISTClassifier()
    for bad in (torch.zeros(2, 28, 28), torch.zeros(2, 3, 28, 28), torch.zeros(2, 1, 32, 32)):
        with pytest.raises(ValueError, match=r"images .*\(B, 1, 28, 28\)"):
            features(bad, model)
        with pytest.raises(ValueError, match=r"images .*\(B, 1, 28, 28\)"):
            predict(bad, model)
    with pytest.raises(ValueError, match="to_unit"):
        features(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), model)
    with pytest.raises(ValueError, match="labels"):
        class_accuracy(torch.zeros(3, 1, 28, 28), torch.zeros(2, dtype=torch.long), model)


def test_features_shape(clf):
    x, _ = load_mnist("test", n=10)
    f = features(x, clf)
    assert f.shape == (10, 128) and f.dtype == torch.float64


def test_class_accuracy_of_real_images(clf):
    x, y = load_mnist("test", n=N)
    assert class_accuracy(x, y, clf) > 0.9
    assert class_accuracy(x, (y + 1) % 10, clf) < 0.1          # wrong labels score low
    hist = class_histogram(x, clf)
    assert hist.shape == (10,) and float(hist.sum()) == pytest.approx(1.0) and hist.min() > 0.03


def test_floor_is_below_degraded_sets(clf):
    floor = frechet_floor(N)
    assert 0 < floor
    real, _ = metrics.reference_images("train", N)
    assert metrics.evaluate_samples(real)["frechet"] == pytest.approx(floor, rel=1e-6)   # the floor's own half
    x, _ = load_mnist("test", n=N)
    g = torch.Generator().manual_seed(0)
    noisy = (x + 0.8 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    scores = metrics.evaluate_samples(noisy)
    assert scores["floor"] == pytest.approx(floor)
    assert scores["frechet"] > 3 * floor and scores["ratio"] > 3, scores
    blank = torch.full_like(x, -1.0)
    blank[:, :, 10:18, 10:18] = 1.0                                                    # one square, no digits
    assert metrics.evaluate_samples(blank)["frechet"] > 3 * floor


def test_references_are_a_fixed_random_draw_not_a_prefix():
    x1, y1 = metrics.reference_images("test", N)
    x2, y2 = metrics.reference_images("test", N)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)                  # the same draw every time
    prefix, y_prefix = load_mnist("test", n=N)
    assert not torch.equal(x1, prefix)
    all_x, _ = load_mnist("test")
    assert metrics.reference_images("test")[0].shape == all_x.shape     # None: the whole split, permuted
    assert torch.bincount(y1, minlength=10).min() >= N // 20            # every digit is represented
    with pytest.raises(ValueError, match="positive"):
        metrics.reference_images("test", 0)


def test_mnist_test_order_is_biased_so_a_prefix_floor_would_flatter(clf):
    # The first 5,000 test digits (NIST SD-3) and the last 5,000 (SD-1) differ far more than two random halves.
    x, _ = load_mnist("test")
    f = features(x, clf)
    perm = torch.randperm(len(f), generator=torch.Generator().manual_seed(1))
    ordered = frechet_distance(f[:5000], f[5000:])
    shuffled = frechet_distance(f[perm[:5000]], f[perm[5000:]])
    assert ordered > 5 * shuffled, (ordered, shuffled)


def test_trilemma_record_and_table(tmp_path, monkeypatch):
    from course_utils.metrics import class_spread, record_trilemma, trilemma_table
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path))
    assert trilemma_table() == {}
    assert class_spread(torch.full((10,), 0.1)) == pytest.approx(0.0)
    assert class_spread(torch.tensor([1.0] + [0.0] * 9)) == pytest.approx(1.0)
    record_trilemma("VAE", 20.0, 0.1, 0.05, 500, profile="cpu")
    record_trilemma("DDPM", 3.0, 0.05, 40.0, 500, sampler="DDPM 1000")
    record_trilemma("VAE", 18.0, 0.1, 0.05, 500)                              # replaced, keeps its place
    rows = trilemma_table()
    assert list(rows) == ["VAE", "DDPM"] and rows["VAE"]["frechet_ratio"] == 18.0 and rows["DDPM"]["n"] == 500
    with pytest.raises(ValueError, match="frechet_ratio"):
        record_trilemma("GAN", float("nan"), 0.1, 0.1, 10)
    with pytest.raises(ValueError, match="n must be"):
        record_trilemma("GAN", 1.0, 0.1, 0.1, 0)
    with pytest.raises(ValueError, match="1-D"):
        class_spread(torch.zeros(2, 5))


def test_reference_trilemma_rows_match_the_reference_runs_they_name():
    from course_utils.checkpoint import reference_run
    from course_utils.metrics import REFERENCE_TRILEMMA, class_spread, reference_trilemma_rows
    rows = reference_trilemma_rows()
    assert list(rows) == list(REFERENCE_TRILEMMA) == ["DDPM (04)", "DDIM-50, CFG (06)", "latent diffusion (07)"]
    for name, (run_name, key) in REFERENCE_TRILEMMA.items():
        run, row = reference_run(run_name), rows[name]
        ref = run["rows"][key]
        assert row["n"] == run["n"] >= 1000 and row["profile"] == f"reference run {run['date']}"
        assert row["frechet_ratio"] == pytest.approx(ref["ratio"], abs=1e-4)
        assert row["class_hist_spread"] == pytest.approx(class_spread(torch.tensor(ref["hist"])), abs=1e-4)
        assert row["ms_per_sample"] == pytest.approx(ref["cpu_ms_per_sample"]) and row["sampler"].startswith(ref["sampler"])
    assert "eta 0" in rows["DDIM-50, CFG (06)"]["sampler"] and "w = " in rows["latent diffusion (07)"]["sampler"]


def test_record_reference_trilemma_writes_the_reference_row(tmp_path, monkeypatch):
    from course_utils.metrics import record_reference_trilemma, reference_trilemma_rows, trilemma_table
    monkeypatch.setenv("COURSE_OUTPUT", str(tmp_path))
    record_reference_trilemma("DDIM-50, CFG (06)")
    assert trilemma_table() == {"DDIM-50, CFG (06)": reference_trilemma_rows()["DDIM-50, CFG (06)"]}
    with pytest.raises(ValueError, match="no reference trilemma row for 'VAE'"):
        record_reference_trilemma("VAE")


def test_an_interrupted_classifier_training_resumes_where_it_stopped(tmp_path, monkeypatch):
    from course_utils import metrics
    reference, _ = metrics.train_classifier(epochs=2, n_train=256, batch_size=128)       # 2 steps per epoch
    shift, calls = metrics._random_shift, []

    def dies_in_epoch_two(x, generator, *args):
        calls.append(1)
        if len(calls) == 3:                                 # the first batch of the second epoch
            raise KeyboardInterrupt
        return shift(x, generator, *args)

    resume = tmp_path / "classifier.resume.pt"
    monkeypatch.setattr(metrics, "_random_shift", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        metrics.train_classifier(epochs=2, n_train=256, batch_size=128, resume_path=resume)
    assert resume.exists()
    monkeypatch.setattr(metrics, "_random_shift", shift)
    resumed, history = metrics.train_classifier(epochs=2, n_train=256, batch_size=128, resume_path=resume)
    assert len(history["epoch_loss"]) == 2
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6)
