"""Training batches from the uint8 image cache, augmented on the device.

The images stay uint8 until the last moment: resident on the GPU when they fit (a quarter of the bytes
of float32), otherwise gathered per batch into pinned host memory by a thread and copied on a side CUDA
stream `COPY_AHEAD` batches ahead, while the compute stream runs the current step. Random crop and
horizontal flip are one vectorised gather on the device; then float, normalisation with the model's
mean/std (`model.preprocess.Normalizer`, the same as predict's), and channels_last on CUDA. All randomness
comes from the caller's generator and is drawn when `batches` is called, so restoring the generator state
reproduces an epoch exactly.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor

from faceage.core.console import log
from faceage.core.errors import FaceageError
from faceage.model.inputs import InputNorm, centre_offset
from faceage.model.preprocess import Normalizer

Batch = tuple[Tensor, Tensor]  # (x, ages)
_GPU_SHARE = 0.5  # the images go on the GPU when they take at most this share of its free memory
_COPY_BYTES = 256 << 20  # chunk size when copying the cache onto the GPU (keeps host memory flat)
COPY_AHEAD = 2  # streamed batches copied to the GPU ahead of the one being trained on


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """How many batches `DeviceImages.batches` yields for `n` indices."""
    return n // batch_size if drop_last else math.ceil(n / batch_size)


class DeviceImages:
    """uint8 images on the device (or in pinned host memory when they don't fit) → augmented float batches.

    mean, std: per-channel (RGB, 0..1 scale) normalisation of the model being fed, `model.input_norm(name)`.
    """

    def __init__(self, images: np.ndarray, ages: np.ndarray, device: torch.device, crop: int,
                 mean: Sequence[float], std: Sequence[float], resident: bool | None = None) -> None:
        if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be (N, H, W, 3) uint8, not {images.shape} {images.dtype}")
        ages = np.asarray(ages, dtype=np.float32)
        if ages.shape != (len(images),):
            raise ValueError(f"ages must be ({len(images)},), not {ages.shape}")
        height, width = images.shape[1:3]
        if not 1 <= crop <= min(height, width):
            raise FaceageError(f"crop {crop} does not fit the {height}×{width} cached images; choose a crop "
                               f"of at most {min(height, width)} or a larger cache size")
        self.device = torch.device(device)
        self._normalize = Normalizer(InputNorm(tuple(mean), tuple(std)), self.device)  # checks mean/std
        self.crop = crop
        self.shape = (len(images), height, width)
        self.resident = _fits(images.nbytes, self.device) if resident is None else resident
        host = _host_tensor(images)
        on_device = self.resident and self.device.type != "cpu"
        self._images = _copy_to(host, self.device) if on_device else host
        self._ages = torch.from_numpy(ages).to(self.device)
        where = "resident on" if self.resident else "streamed to"
        log.info("%d images (%.2f GB uint8) %s %s", len(images), images.nbytes / 1e9, where, self.device)

    def __len__(self) -> int:
        return self.shape[0]

    def batches(self, indices: np.ndarray, batch_size: int, train: bool, generator: torch.Generator,
                drop_last: bool = False) -> Iterator[Batch]:
        """(x, ages) batches of the rows `indices`: x float (B, 3, crop, crop) normalised, ages float32 (B,).

        train: order shuffled, a random crop and a horizontal flip per image; eval: the given order, centre
        crop. Every random number of the epoch is drawn from `generator` here, before the first batch.
        """
        order = self._check(indices, batch_size)
        n = len(order) // batch_size * batch_size if drop_last else len(order)
        _, height, width = self.shape
        if train:
            order = order[torch.randperm(len(order), generator=generator, device=generator.device).cpu()][:n]
            top = _draw(height - self.crop + 1, n, generator)
            left = _draw(width - self.crop + 1, n, generator)
            flip = _draw(2, n, generator).bool()
        else:
            order = order[:n]
            top = torch.full((n,), centre_offset(height, self.crop), dtype=torch.long)
            left = torch.full((n,), centre_offset(width, self.crop), dtype=torch.long)
            flip = torch.zeros(n, dtype=torch.bool)
        offsets = [t.to(self.device) for t in (top, left, flip)]
        if self.resident:
            return self._resident(order, offsets, batch_size)
        return self._streamed(order, offsets, batch_size)

    def _check(self, indices: np.ndarray, batch_size: int) -> Tensor:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, not {batch_size}")
        idx = np.asarray(indices)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise ValueError(f"indices must be a 1-D integer array, not {idx.dtype} of shape {idx.shape}")
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise ValueError(f"indices must lie in [0, {len(self)}), got {idx.min()}..{idx.max()}")
        return torch.from_numpy(idx.astype(np.int64))

    def _resident(self, order: Tensor, offsets: list[Tensor], batch_size: int) -> Iterator[Batch]:
        """Crop straight out of the device-resident set (one gather per batch)."""
        order = order.to(self.device)
        top, left, flip = offsets
        for s in range(0, len(order), batch_size):
            rows, b = order[s:s + batch_size], slice(s, s + batch_size)
            yield self._augment(self._images, rows, top[b], left[b], flip[b]), self._ages[rows]

    def _streamed(self, order: Tensor, offsets: list[Tensor], batch_size: int) -> Iterator[Batch]:
        """Gather batches on the host (a thread, into pinned memory on CUDA), copy them to the device
        `COPY_AHEAD` batches ahead of the one yielded, crop on the device. The order goes to the device
        once, not a batch at a time from pageable memory."""
        top, left, flip = offsets
        rows = order.to(self.device)
        chunks = iter([order[s:s + batch_size] for s in range(0, len(order), batch_size)])
        local = torch.arange(batch_size, device=self.device)
        copier = _Copier(self.device)
        with ThreadPoolExecutor(1, thread_name_prefix="faceage-gather") as pool:
            gathering: deque[Future[Tensor]] = deque(
                pool.submit(self._gather, chunk) for chunk in itertools.islice(chunks, COPY_AHEAD + 1))
            copied: deque[_Copy] = deque()
            for s in range(0, len(order), batch_size):
                while gathering and len(copied) <= COPY_AHEAD:  # this batch and the next ones on their way
                    copied.append(copier.start(gathering.popleft().result()))
                    for chunk in itertools.islice(chunks, 1):
                        gathering.append(pool.submit(self._gather, chunk))
                batch, b = copier.finish(copied.popleft()), slice(s, s + batch_size)
                yield self._augment(batch, local[:len(batch)], top[b], left[b], flip[b]), self._ages[rows[b]]

    def _gather(self, rows: Tensor) -> Tensor:
        pin = self.device.type == "cuda"
        out = torch.empty((len(rows), *self._images.shape[1:]), dtype=torch.uint8, pin_memory=pin)
        return torch.index_select(self._images, 0, rows, out=out)

    def _augment(self, images: Tensor, rows: Tensor, top: Tensor, left: Tensor, flip: Tensor) -> Tensor:
        """Crop `crop`² at (top, left) of each image `rows`, mirrored where `flip`: one advanced-indexing
        gather of (B, crop, crop, 3), whose NCHW view is already channels_last; then normalise."""
        steps = torch.arange(self.crop, device=self.device)
        ys = top[:, None] + steps
        xs = torch.where(flip[:, None], left[:, None] + (self.crop - 1) - steps, left[:, None] + steps)
        patch = images[rows[:, None, None], ys[:, :, None], xs[:, None, :]]
        x = self._normalize(patch)
        return x if self.device.type == "cuda" else x.contiguous()


_Copy = tuple[Tensor, "torch.cuda.Event | None"]  # a batch being copied, and the event marking the end


class _Copier:
    """Host → device copies of streamed batches: on CUDA on a side stream, so a copy overlaps the compute
    stream's work; elsewhere the batch itself (it is already where it is used)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def start(self, host: Tensor) -> _Copy:
        """Begin copying a (pinned) host batch; use the batch only through `finish`."""
        if self.stream is None:
            return host.to(self.device), None
        with torch.cuda.stream(self.stream):
            batch = host.to(self.device, non_blocking=True)
            done = torch.cuda.Event()
            done.record(self.stream)
        return batch, done

    def finish(self, copy: _Copy) -> Tensor:
        """The batch, once the compute stream waits for its copy; its memory stays reserved until the compute
        stream is done with it (it was allocated on the side stream)."""
        batch, done = copy
        if done is not None:
            compute = torch.cuda.current_stream(self.device)
            compute.wait_event(done)
            batch.record_stream(compute)
        return batch


def _draw(high: int, n: int, generator: torch.Generator) -> Tensor:
    """n integers in [0, high) from `generator`, on the CPU."""
    return torch.randint(0, high, (n,), generator=generator, device=generator.device).cpu()


def _fits(nbytes: int, device: torch.device) -> bool:
    """Whether the images can live on `device`: always on the CPU; on CUDA within a share of free memory."""
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return nbytes <= _GPU_SHARE * free
    return False


def _host_tensor(images: np.ndarray) -> Tensor:
    """The array as a tensor without a copy (a read-only memory map is never written through it)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(images)


def _copy_to(host: Tensor, device: torch.device) -> Tensor:
    """The images on `device`, copied in chunks so host memory stays flat while the memory map is read."""
    out = torch.empty(host.shape, dtype=torch.uint8, device=device)
    step = max(1, _COPY_BYTES // max(1, host[0].numel()))
    for s in range(0, len(host), step):
        out[s:s + step].copy_(host[s:s + step])
    return out
