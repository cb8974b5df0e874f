"""Shared input checks (course_utils.validation): one clear ValueError per kind of bad input."""
from __future__ import annotations

import pytest
import torch

from course_utils.validation import (check_alpha_bar, check_eta, check_image_batch, check_labels, check_same_shape,
                                     check_timesteps, extract)


# ----------------------------------------------------------------------------- image batches

def test_image_batch_accepts_float_batches():
    assert check_image_batch(torch.zeros(2, 3, 5, 7)) is None
    assert check_image_batch(torch.zeros(2, 1, 28, 28, dtype=torch.float64), "x0", channels=1, size=(28, 28)) is None
    assert check_image_batch(torch.zeros(0, 1, 4, 4), channels=1) is None                # an empty batch is fine


@pytest.mark.parametrize("bad, kwargs, match", [
    ([[0.0]], {}, r"images must be a torch.Tensor of shape \(B, C, H, W\), got list"),
    (torch.zeros(2, 28, 28), {"channels": 1, "size": (28, 28)}, r"\(B, 1, 28, 28\), got \(2, 28, 28\) \(add the"),
    (torch.zeros(2, 1, 1, 4, 4), {}, r"images must have shape \(B, C, H, W\), got \(2, 1, 1, 4, 4\)$"),
    (torch.zeros(2, 3, 28, 28), {"channels": 1}, r"images has 3 channels, expected 1: shape \(B, 1, H, W\)"),
    (torch.zeros(2, 1, 32, 32), {"size": (28, 28)}, r"images must have shape \(B, C, 28, 28\), got \(2, 1, 32, 32\)"),
    (torch.zeros(2, 1, 4, 4, dtype=torch.uint8), {}, r"float tensor in \[-1, 1\], got dtype torch.uint8; .*to_unit"),
])
def test_image_batch_errors_name_the_problem(bad, kwargs, match):
    with pytest.raises(ValueError, match=match):
        check_image_batch(bad, "images", **kwargs)


# ----------------------------------------------------------------------------- matching shapes

def test_same_shape():
    assert check_same_shape(torch.zeros(2, 3), torch.ones(2, 3)) is None
    with pytest.raises(ValueError, match=r"eps has shape \(2, 3\) but x_t has \(2, 4\); they must match"):
        check_same_shape(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"noise has shape list but x has \(2,\)"):
        check_same_shape([0.0, 1.0], torch.zeros(2), "noise", "x")


# ----------------------------------------------------------------------------- labels

def test_labels_are_int64_of_shape_batch():
    y = check_labels(torch.tensor([1, 2, 3], dtype=torch.int32), 3)
    assert y.dtype == torch.long and y.tolist() == [1, 2, 3]
    assert check_labels(7, 4).tolist() == [7, 7, 7, 7]                                  # a scalar is repeated
    assert check_labels([0, 9], 2, num_classes=10).tolist() == [0, 9]
    assert check_labels(torch.tensor([10, 3]), 2, num_classes=10, allow_null=True).tolist() == [10, 3]
    assert check_labels(torch.zeros(0, dtype=torch.long), 0, num_classes=10).shape == (0,)
    assert check_labels(2, 2, device="cpu").device.type == "cpu"


@pytest.mark.parametrize("y, batch, kwargs, match", [
    (torch.tensor([1.0, 2.0]), 2, {}, r"labels must be integers \(torch.long\), got dtype torch.float32"),
    (torch.tensor([True, False]), 2, {}, "must be integers"),
    (torch.tensor([1, 2, 3]), 2, {}, r"expected labels of shape \(2,\), one per image, got \(3,\)"),
    (torch.zeros(2, 1, dtype=torch.long), 2, {}, r"shape \(2,\)"),
    (torch.tensor([0, 10]), 2, {"num_classes": 10}, r"labels must lie in \[0, 9\], got values from 0 to 10"),
    (torch.tensor([-1, 3]), 2, {"num_classes": 10, "allow_null": True},
     r"labels must lie in \[0, 9\] \(or 10, the null label\), got values from -1 to 3"),
    (torch.tensor([11, 3]), 2, {"num_classes": 10, "allow_null": True}, r"or 10, the null label"),
])
def test_label_errors(y, batch, kwargs, match):
    with pytest.raises(ValueError, match=match):
        check_labels(y, batch, **kwargs)


def test_label_errors_use_the_given_name():
    with pytest.raises(ValueError, match=r"y_a must be integers"):
        check_labels(0.5, 2, name="y_a")


# ----------------------------------------------------------------------------- timesteps

def test_timesteps_are_int64_of_shape_batch():
    t = check_timesteps(torch.tensor([0, 9], dtype=torch.int32), 10)
    assert t.dtype == torch.long and t.tolist() == [0, 9]
    assert check_timesteps(torch.tensor(4), 10, batch=3).tolist() == [4, 4, 4]
    assert check_timesteps(5, 10, batch=2).tolist() == [5, 5]
    assert check_timesteps([1, 2], 10, batch=2).tolist() == [1, 2]


@pytest.mark.parametrize("t, T, batch, match", [
    (torch.tensor([3, 10]), 10, None, r"timesteps must lie in \[0, 9\], got values from 3 to 10"),
    (torch.tensor([-1]), 10, None, r"must lie in \[0, 9\]"),
    (torch.tensor([1.0]), 10, None, r"timesteps must be integers \(torch.long\), got dtype torch.float32"),
    (torch.tensor([True]), 10, None, "must be integers"),
    (torch.zeros(2, 2, dtype=torch.long), 10, None, r"timesteps must have shape \(B,\), got \(2, 2\)"),
    (torch.tensor(3), 10, None, r"shape \(B,\), got \(\)"),                        # a scalar needs the batch size
    (torch.zeros(3, dtype=torch.long), 10, 2, "3 timesteps for a batch of 2 images"),
])
def test_timestep_errors(t, T, batch, match):
    with pytest.raises(ValueError, match=match):
        check_timesteps(t, T, batch=batch)


# ----------------------------------------------------------------------------- eta

def test_eta():
    assert check_eta(0) == 0.0 and isinstance(check_eta(1), float)
    assert check_eta(0.25) == 0.25
    for bad in (-0.1, 1.5, float("nan"), True, "0.5", None, torch.tensor(0.5)):
        with pytest.raises(ValueError, match=r"eta must be a number in \[0, 1\] \(0: deterministic DDIM"):
            check_eta(bad)


# ----------------------------------------------------------------------------- alpha_bar

def test_alpha_bar_values():
    a = check_alpha_bar(0.5)
    assert a.dtype == torch.float64 and a.dim() == 0 and a.item() == 0.5
    assert check_alpha_bar(1).item() == 1.0                                          # alpha_bar_{-1} = 1 is allowed
    table = torch.linspace(0.01, 1, 7)
    assert check_alpha_bar(table) is table                                          # tensors pass through unchanged
    assert check_alpha_bar(torch.zeros(0)).shape == (0,)


@pytest.mark.parametrize("bad, match", [
    (0.0, r"alpha_bar_t must lie in \(0, 1\], got values from 0 to 0"),
    (torch.tensor([0.5, 1.5]), r"must lie in \(0, 1\], got values from 0.5 to 1.5"),
    (torch.tensor([0.5, float("nan")]), r"must lie in \(0, 1\]"),
    (torch.tensor([1]), "alpha_bar_t must be floating point, got dtype torch.int64"),
    ("0.5", "alpha_bar_t must be a number or a float tensor"),
    (True, "must be a number or a float tensor"),
])
def test_alpha_bar_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        check_alpha_bar(bad, "alpha_bar_t")


# ----------------------------------------------------------------------------- extract

def test_extract_shape_values_and_dtype():
    a = torch.linspace(0.1, 1.0, 10, dtype=torch.float64)                            # a (T,) table
    t = torch.tensor([0, 9, 4])
    out = extract(a, t, (3, 1, 28, 28))
    assert out.shape == (3, 1, 1, 1) and out.dtype == torch.float64
    assert torch.equal(out.flatten(), a[t])
    assert extract(a, t, (3, 16)).shape == (3, 1)                                    # e.g. latents (B, D)
    x = torch.ones(3, 1, 4, 4)
    assert (extract(a, t, x.shape) * x).shape == x.shape                             # it broadcasts


def test_extract_lives_on_the_device_of_t():
    a = torch.linspace(0.1, 1.0, 10)
    assert extract(a, torch.tensor([1, 2]), (2, 1, 4, 4)).device.type == "cpu"
    if torch.cuda.is_available():
        out = extract(a, torch.tensor([1, 2], device="cuda"), (2, 1, 4, 4))
        assert out.device.type == "cuda" and torch.equal(out.cpu().flatten(), a[[1, 2]])
    else:
        meta = extract(a, torch.tensor([1, 2], device="meta"), (2, 1, 4, 4))
        assert meta.device.type == "meta" and meta.shape == (2, 1, 1, 1)
