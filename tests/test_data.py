"""The uint8 image cache (real UTKFace chips) and device-side batches (crop, flip, normalisation, order)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import faceage.train.cache as cache
from faceage.core.errors import FaceageError
from faceage.model.network import input_norm
from faceage.train.batches import DeviceImages, num_batches
from faceage.train.cache import open_cache

CPU = torch.device("cpu")
NORM = input_norm("resnet18")._asdict()  # ImageNet's mean and std, as DeviceImages keyword arguments
MEAN = np.array(NORM["mean"], dtype=np.float64)
STD = np.array(NORM["std"], dtype=np.float64)


@pytest.fixture(autouse=True)
def _no_cache_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FACEAGE_CACHE_DIR", raising=False)


@pytest.fixture
def chips(utkface_dir: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """40 real 200×200 aligned chips copied into a fresh folder (the shared data stays untouched)."""
    names = sorted(p.name for p in utkface_dir.glob("*.jpg"))[:40]
    root = tmp_path / "aligned"
    root.mkdir()
    for name in names:
        shutil.copy2(utkface_dir / name, root / name)
    return root, names


def _cache_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.u8"))


# ---------------------------------------------------------------- cache


def test_cache_equals_direct_decoding(chips: tuple[Path, list[str]]) -> None:
    root, names = chips
    native = open_cache(root, names, size=200)
    assert native.shape == (40, 200, 200, 3) and native.dtype == np.uint8
    for i in (0, 17, 39):
        assert np.array_equal(native[i], np.asarray(Image.open(root / names[i]).convert("RGB")))
    resized = open_cache(root, names, size=256)
    assert resized.shape == (40, 256, 256, 3)
    for i in (0, 17, 39):
        expected = Image.open(root / names[i]).convert("RGB").resize((256, 256), Image.Resampling.LANCZOS)
        assert np.array_equal(resized[i], np.asarray(expected))
    meta = json.loads(next((root / ".faceage-cache").glob("*.json")).read_text())
    assert meta["shape"][0] == 40 and meta["size"] in (200, 256)


def test_process_pool_build_equals_inline(chips: tuple[Path, list[str]], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    root, names = chips
    inline = np.array(open_cache(root, names, size=96, workers=1))
    monkeypatch.setattr(cache, "_PER_WORKER", 1)
    monkeypatch.setattr(cache, "_CHUNK", 7)
    monkeypatch.setenv("FACEAGE_CACHE_DIR", str(tmp_path / "pool-cache"))
    pooled = open_cache(root, names, size=96, workers=2)
    assert np.array_equal(inline, pooled)


def test_cache_is_reused_without_rebuilding(chips: tuple[Path, list[str]],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    root, names = chips
    first = np.array(open_cache(root, names, size=64))
    [data_file] = _cache_files(root / ".faceage-cache")
    stamp = data_file.stat().st_mtime_ns

    def no_build(*args: object) -> None:
        raise AssertionError("cache rebuilt although no image changed")

    monkeypatch.setattr(cache, "_build", no_build)
    again = open_cache(root, names, size=64)
    assert np.array_equal(first, again)
    assert data_file.stat().st_mtime_ns == stamp


def test_cache_rebuilt_when_an_image_changes(chips: tuple[Path, list[str]]) -> None:
    root, names = chips
    before = np.array(open_cache(root, names, size=200))
    [old] = _cache_files(root / ".faceage-cache")
    shutil.copyfile(root / names[1], root / names[0])  # image 0 now holds image 1's pixels
    st = (root / names[0]).stat()
    os.utime(root / names[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    after = open_cache(root, names, size=200)
    assert np.array_equal(after[0], before[1])
    assert np.array_equal(after[2:], before[2:])
    [new] = _cache_files(root / ".faceage-cache")  # the stale cache was replaced, not kept beside
    assert new != old


def test_unreadable_image_names_the_file_and_leaves_no_cache(chips: tuple[Path, list[str]]) -> None:
    root, names = chips
    (root / names[5]).write_bytes(b"not a jpeg at all")
    with pytest.raises(FaceageError, match=names[5]):
        open_cache(root, names, size=64)
    assert _cache_files(root / ".faceage-cache") == []
    assert list((root / ".faceage-cache").glob("*.tmp*")) == []
    with pytest.raises(FaceageError, match=r"missing\.jpg"):
        open_cache(root, [*names, "missing.jpg"], size=64)


def test_read_only_images_folder_falls_back_to_user_cache(chips: tuple[Path, list[str]], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    root, names = chips
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    root.chmod(0o555)
    try:
        images = open_cache(root, names[:3], size=32)
    finally:
        root.chmod(0o755)
    assert not (root / ".faceage-cache").exists()
    assert isinstance(images, np.memmap) and images.filename is not None
    assert Path(images.filename).parent == tmp_path / "home" / ".cache" / "faceage"
    monkeypatch.setenv("FACEAGE_CACHE_DIR", str(tmp_path / "chosen"))
    chosen = open_cache(root, names[:3], size=32)
    assert isinstance(chosen, np.memmap) and chosen.filename is not None
    assert Path(chosen.filename).parent == tmp_path / "chosen"


def test_unwritable_cache_folder_says_how_to_fix_it(chips: tuple[Path, list[str]], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root, names = chips
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("FACEAGE_CACHE_DIR", str(tmp_path / "a-file" / "cache"))
    with pytest.raises(FaceageError, match="FACEAGE_CACHE_DIR"):
        open_cache(root, names[:2], size=32)


# ---------------------------------------------------------------- batches


def _noise(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """Undo the normalisation: (B, 3, h, w) float → (B, h, w, 3) uint8 (exact after rounding)."""
    pixels = x.double().numpy().transpose(0, 2, 3, 1) * (255 * STD) + 255 * MEAN
    assert np.abs(pixels - np.round(pixels)).max() < 1e-3
    return np.round(pixels).astype(np.uint8)


def _epoch(data: DeviceImages, indices: np.ndarray, seed: int, train: bool = True, bs: int = 8,
           drop_last: bool = False) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(data.batches(indices, bs, train, torch.Generator().manual_seed(seed), drop_last))


def _same(a: list[tuple[torch.Tensor, torch.Tensor]], b: list[tuple[torch.Tensor, torch.Tensor]]) -> bool:
    return len(a) == len(b) and all(torch.equal(x1, x2) and torch.equal(y1, y2)
                                    for (x1, y1), (x2, y2) in zip(a, b, strict=True))


def test_batches_shapes_dtype_and_normalisation() -> None:
    images = np.zeros((10, 8, 8, 3), dtype=np.uint8)
    images[..., 1], images[..., 2] = 128, 255
    data = DeviceImages(images, np.arange(10) * 2.5, CPU, crop=6, **NORM)
    batches = _epoch(data, np.arange(10), seed=0, bs=4)
    assert [len(x) for x, _ in batches] == [4, 4, 2] == [len(a) for _, a in batches]
    x, ages = batches[0]
    assert x.shape == (4, 3, 6, 6) and x.dtype == torch.float32 and ages.dtype == torch.float32
    expected = (np.array([0, 128, 255]) / 255 - MEAN) / STD
    assert np.allclose(x[:, :, 2, 3].numpy(), expected, atol=1e-6)


@pytest.mark.parametrize(("backbone", "expected"), [
    ("tf_efficientnet_lite0", [-1.0, 0.00392157, 1.0]),  # timm's TF-ported weights: mean = std = 0.5
    ("resnet18", [-2.117904, 0.205182, 2.64]),  # ImageNet's mean and std
])
def test_inputs_are_normalised_as_the_backbone_expects(backbone: str, expected: list[float]) -> None:
    images = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    images[..., 1], images[..., 2] = 128, 255  # the pixel (0, 128, 255)
    norm = input_norm(backbone)
    data = DeviceImages(images, np.arange(2), CPU, crop=4, mean=norm.mean, std=norm.std)
    [(x, _)] = _epoch(data, np.arange(2), seed=0, train=False)
    np.testing.assert_allclose(x[:, :, 1, 2].numpy(), [expected] * 2, atol=1e-5)


def test_bad_normalisation_is_refused() -> None:
    images = _noise(2, 4)
    for mean, std in (((0.5, 0.5), (0.5, 0.5, 0.5)), ((0.5, 0.5, 0.5), (0.5, 0.0, 0.5))):
        with pytest.raises(ValueError, match="mean and std"):
            DeviceImages(images, np.arange(2), CPU, crop=4, mean=mean, std=std)


def test_centre_crop_is_the_exact_middle_slice_in_the_given_order() -> None:
    images = _noise(12, 11)
    data = DeviceImages(images, np.arange(12), CPU, crop=6, **NORM)
    order = np.array([7, 2, 11, 0, 5])
    [(x, ages)] = _epoch(data, order, seed=0, train=False, bs=8)
    assert ages.tolist() == order.tolist()
    assert np.array_equal(_to_uint8(x), images[order, 2:8, 2:8])


def test_random_crop_is_an_in_bounds_slice_flipped_about_half_the_time() -> None:
    images = _noise(400, 12, seed=1)
    data = DeviceImages(images, np.arange(400), CPU, crop=8, **NORM)
    flips, corners = 0, set()
    for x, ages in _epoch(data, np.arange(400), seed=3, bs=64):
        for patch, row in zip(_to_uint8(x), ages.long().tolist(), strict=True):
            found = []
            for t in range(5):
                for left in range(5):
                    window = images[row, t:t + 8, left:left + 8]
                    found += [(t, left, f) for f, w in ((0, window), (1, window[:, ::-1]))
                              if np.array_equal(patch, w)]
            assert len(found) == 1, f"crop of image {row} is not a unique slice of it"
            flips += found[0][2]
            corners.add(found[0][:2])
    assert 150 < flips < 250
    assert len(corners) == 25  # every offset in bounds occurs


def test_same_seed_same_batches_other_seed_differs_and_state_restores() -> None:
    data = DeviceImages(_noise(30, 10), np.arange(30), CPU, crop=7, **NORM)
    a, b, c = (_epoch(data, np.arange(30), seed=s) for s in (5, 5, 6))
    assert _same(a, b)
    assert not torch.equal(a[0][0], c[0][0])
    gen = torch.Generator().manual_seed(9)
    state = gen.get_state()
    first = list(data.batches(np.arange(30), 8, True, gen))
    second = list(data.batches(np.arange(30), 8, True, gen))
    assert not _same(first, second)  # the generator moves on between epochs
    gen.set_state(state)
    assert _same(first, list(data.batches(np.arange(30), 8, True, gen)))


def test_every_index_once_per_epoch_shuffled_and_drop_last() -> None:
    data = DeviceImages(_noise(50, 6), np.arange(50), CPU, crop=4, **NORM)
    subset = np.random.default_rng(0).choice(50, 37, replace=False)
    seen = torch.cat([a for _, a in _epoch(data, subset, seed=1, bs=8)]).long().numpy()
    assert sorted(seen) == sorted(subset) and not np.array_equal(seen, subset)
    dropped = _epoch(data, subset, seed=1, bs=8, drop_last=True)
    assert [len(x) for x, _ in dropped] == [8] * 4 == [8] * num_batches(37, 8, drop_last=True)
    assert num_batches(37, 8) == 5
    assert len(set(torch.cat([a for _, a in dropped]).long().tolist())) == 32
    assert _epoch(data, np.array([], dtype=np.int64), seed=0) == []


def test_streamed_from_host_equals_resident() -> None:
    """Every batch count around the copy-ahead depth: 21 batches down to one, and a subset of rows."""
    images, ages = _noise(21, 9), np.arange(21) + 0.5
    resident = DeviceImages(images, ages, CPU, crop=5, **NORM, resident=True)
    streamed = DeviceImages(images, ages, CPU, crop=5, **NORM, resident=False)
    every, subset = np.arange(21), np.array([17, 3, 8, 20, 0])
    for train in (True, False):
        for rows, bs in ((every, 1), (every, 4), (every, 8), (subset, 2), (subset, 32)):
            got = _epoch(streamed, rows, 4, train, bs)
            assert len(got) == -(-len(rows) // bs)
            assert _same(_epoch(resident, rows, 4, train, bs), got)


def test_batches_from_the_real_cache(chips: tuple[Path, list[str]]) -> None:
    root, names = chips
    images = open_cache(root, names, size=256)
    ages = np.array([float(n.split("_")[0]) for n in names])
    data = DeviceImages(images, ages, CPU, crop=224, **NORM)
    [(x, got)] = _epoch(data, np.arange(3), seed=0, train=False)
    assert np.array_equal(_to_uint8(x), images[:3, 16:240, 16:240])
    assert got.tolist() == ages[:3].tolist()


def test_bad_crop_and_indices_are_refused() -> None:
    images = _noise(4, 8)
    with pytest.raises(FaceageError, match="crop 9"):
        DeviceImages(images, np.arange(4), CPU, crop=9, **NORM)
    data = DeviceImages(images, np.arange(4), CPU, crop=8, **NORM)
    with pytest.raises(ValueError, match="indices"):
        _epoch(data, np.array([0, 4]), seed=0)


@pytest.mark.cuda
@pytest.mark.parametrize("bs", [3, 8, 64])
def test_cuda_resident_and_pinned_streaming_equal_the_cpu_batches(bs: int) -> None:
    """Streamed: pinned batches copied on a side stream up to two ahead, each waited for before use."""
    images, ages = _noise(40, 12, seed=4), np.arange(40) * 1.5
    expected = _epoch(DeviceImages(images, ages, CPU, crop=9, **NORM), np.arange(40), seed=2, bs=bs)
    for resident in (True, False):
        data = DeviceImages(images, ages, torch.device("cuda"), crop=9, **NORM, resident=resident)
        got = _epoch(data, np.arange(40), seed=2, bs=bs)
        assert all(x.is_cuda and x.is_contiguous(memory_format=torch.channels_last) for x, _ in got)
        assert _same(expected, [(x.cpu().contiguous(), a.cpu()) for x, a in got])
