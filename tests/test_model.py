"""The age model: timm backbones with our heads, head initialisation, and decoding outputs into ages."""

from __future__ import annotations

import math

import pytest
import timm.models
import torch

import faceage.model.network as model_module
from faceage.core.errors import FaceageError
from faceage.model.losses import AGE_CLASSES
from faceage.model.network import HEAD_INIT_STD, AgeModel, build_model, create_backbone, input_norm


@pytest.fixture(scope="module")
def resnet18_mv() -> AgeModel:
    return build_model("resnet18", "mv")[0].eval()


@pytest.mark.parametrize("backbone", ["resnet18", "tf_efficientnet_lite0"])
@pytest.mark.parametrize(("loss", "shape"), [("mv", (3, AGE_CLASSES)), ("l2", (3,))])
def test_forward_shapes(backbone: str, loss: str, shape: tuple[int, ...]) -> None:
    model, source = build_model(backbone, loss)
    assert source == "random init"
    assert model.head_kind == ("regression" if loss == "l2" else "distribution")
    with torch.no_grad():
        out = model.eval()(torch.randn(3, 3, 64, 64))
    assert out.shape == shape and out.dtype == torch.float32


@pytest.mark.parametrize(("backbone", "features"), [
    ("mobilenetv3_small_050", 1024),  # a conv head widens the 288 pooled features: head_hidden_size
    ("resnet18", 512),  # no head before the classifier: num_features
])
def test_head_takes_the_width_the_backbone_returns(backbone: str, features: int) -> None:
    model, _ = build_model(backbone, "mv")
    assert model.head.in_features == features
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 3, 64, 64)).shape == (2, AGE_CLASSES)


def test_input_norm_follows_the_backbones_pretrained_config(monkeypatch: pytest.MonkeyPatch) -> None:
    assert input_norm("tf_efficientnet_lite0") == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert input_norm("resnet18") == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    for name in ("tf_efficientnet_lite0", "resnet18", "test_resnet", "resnet18.tv_in1k"):
        cfg = create_backbone(name).pretrained_cfg  # the name alone gives what the built model states
        assert input_norm(name) == (tuple(cfg["mean"]), tuple(cfg["std"]))
    with pytest.raises(FaceageError, match="unknown timm backbone"):
        input_norm("resnet_nonexistent")
    with pytest.raises(FaceageError, match=r"resnet18\.badtag.*Drop the tag"):
        input_norm("resnet18.badtag")
    monkeypatch.setattr(timm.models, "get_pretrained_cfg", lambda name: None)
    assert input_norm("resnet50") == (model_module.IMAGENET_MEAN, model_module.IMAGENET_STD)


def test_heads_start_small() -> None:
    for loss, rows in (("mv", AGE_CLASSES), ("softmax", AGE_CLASSES), ("l2", 1)):
        head = build_model("resnet18", loss)[0].head
        assert head.weight.shape == (rows, 512)
        assert head.weight.std().item() == pytest.approx(HEAD_INIT_STD, rel=0.15 if rows == 1 else 0.02)
        assert torch.count_nonzero(head.bias).item() == 0


def test_decode_rounds_the_mean_half_up(resnet18_mv: AgeModel) -> None:
    logits = torch.full((2, AGE_CLASSES), -1e4)
    logits[0, 30] = logits[0, 31] = 0.0  # mean 30.5 exactly, variance 0.25
    logits[1, 40] = 0.0  # all mass on 40
    pred = resnet18_mv.decode(logits)
    assert pred.mean.tolist() == [30.5, 40.0]
    assert pred.pred.tolist() == [31.0, 40.0]  # torch.round would give 30 (half to even)
    assert pred.std.tolist() == pytest.approx([0.5, 0.0])
    assert pred.probs is not None and pred.probs.shape == (2, AGE_CLASSES)


def test_decode_std_is_sqrt_variance_and_fp32_under_autocast(resnet18_mv: AgeModel) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = torch.zeros(1, AGE_CLASSES, dtype=torch.bfloat16)
        pred = resnet18_mv.decode(logits)
    assert all(t.dtype == torch.float32 for t in (pred.pred, pred.mean, pred.std))
    assert pred.mean.item() == pytest.approx(50.0)
    assert pred.std.item() == pytest.approx(math.sqrt(850.0), rel=1e-5)  # uniform over 0..100


@pytest.mark.parametrize("loss", ["mv", "l2"])
def test_the_head_runs_in_fp32_under_bf16_autocast(loss: str) -> None:
    """The backbone may run in bf16, the head not: its logits are the fp32 head applied to the features, as
    in predict and the exported model, not the bf16 linear autocast would run."""
    model = build_model("resnet18", loss)[0].eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
        features = model.backbone(x)
        bf16_head = model.head(features)
    assert features.dtype == torch.bfloat16 and bf16_head.dtype == torch.bfloat16  # what autocast would do
    with torch.no_grad():
        expected = model.head(features.float())
    expected = expected[:, 0] if loss == "l2" else expected
    assert out.dtype == torch.float32
    assert torch.equal(out, expected)


@pytest.mark.cuda
def test_the_head_runs_in_fp32_under_cuda_bf16_autocast() -> None:
    model = build_model("resnet18", "mv")[0].cuda().eval()
    x = torch.randn(2, 3, 64, 64, device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        out, features = model(x), model.backbone(x)
    assert features.dtype == torch.bfloat16 and out.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(out, model.head(features.float()))


def test_regression_decode_destandardises() -> None:
    model, _ = build_model("resnet18", "l2", target_mean=40.0, target_std=10.0)
    pred = model.decode(torch.tensor([0.25, -1.0, 0.149]))
    assert pred.mean.tolist() == pytest.approx([42.5, 30.0, 41.49])
    assert pred.pred.tolist() == [43.0, 30.0, 41.0]
    assert pred.std.tolist() == [0.0, 0.0, 0.0]
    assert pred.probs is None
    state = model.state_dict()  # the standardisation travels with the checkpoint
    assert state["target_mean"].item() == 40.0 and state["target_std"].item() == 10.0


@pytest.mark.parametrize(("args", "message"), [
    (("resnet_nonexistent", "mv"), "unknown timm backbone"),
    (("resnet18", "huber"), "unknown loss"),
    (("resnet18", "mv", "/nonexistent/weights.pth"), "no such file"),
])
def test_bad_arguments_are_refused(args: tuple, message: str) -> None:
    with pytest.raises(FaceageError, match=message):
        build_model(*args)
