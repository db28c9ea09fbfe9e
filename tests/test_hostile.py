"""faceage's promises under careless and hostile use, one class per section (issue 11): paths stay inside
their folder; nothing is overwritten that the user did not name; one writer per output folder; every job
finishes whatever the folder holds and every failure is one message; a run folder means what it says; no
orphan processes and no stale walks."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

import faceage.core.atomic as atomic
from faceage.align.run import align_folder
from faceage.align.settings import AlignSettings
from faceage.core.errors import FaceageError
from faceage.core.files import list_images
from faceage.core.imageio import ImageLoadError, load_rgb
from faceage.core.lock import BusyError, folder_lock
from faceage.core.schema import FACES, TableError, read_table
from faceage.evaluate.run import evaluate
from faceage.manifest.build import build_manifest, write_manifest
from faceage.manifest.datasets import CsvColumns, LabelOptions
from faceage.manifest.read import read_manifest
from faceage.model.checkpoint import save_checkpoint
from faceage.predict.draw import draw_targets, is_drawn, save_drawn
from faceage.predict.output import check_out
from faceage.train.config import resolve_config
from faceage.train.fit import run_training
from faceage.train.runs import RunFolder, resolve_run_config

MANIFEST_HEADER = "path,age,age_std,subject,fold,val_fold\n"
PREDICTIONS = "path,age,pred,mean,std,fold\na.jpg,30,31,31.2,2.0,0\nb.jpg,40,38,38.4,3.0,0\n"


def _morph_src(morph_dir: Path, tmp_path: Path, n: int = 4) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for photo in sorted((morph_dir / "images").glob("*.JPG"))[:n]:
        (src / photo.name).symlink_to(photo)
    return src


# 1. Paths stay inside their folder -------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["../outside/secret.jpg", "/etc/passwd", "a/../../b.jpg", "C:/x.jpg"])
def test_a_manifest_path_leaving_its_folder_is_refused(tmp_path: Path, path: str) -> None:
    manifest = tmp_path / "se.csv"
    manifest.write_text(MANIFEST_HEADER + f"ok.jpg,30,,s1,0,-1\n{path},40,,s2,1,-1\n")
    with pytest.raises(TableError, match=r"se\.csv, row 3, column 'path'.*leaves the folder"):
        read_manifest(manifest)


def test_faces_csv_and_labels_paths_are_checked_where_they_are_read(tmp_path: Path) -> None:
    aligned = tmp_path / "aligned"
    aligned.mkdir()
    row = dict.fromkeys(FACES.names(), "") | {"src": "a.jpg", "dst": "../x.jpg", "status": "ok", "n_faces": 1,
                                              "detector": "d", "settings": "s", "src_bytes": 1,
                                              "src_mtime_ns": 1}
    pd.DataFrame([row], columns=FACES.names()).to_csv(aligned / "faces.csv", index=False)
    with pytest.raises(TableError, match=r"faces\.csv, row 2, column 'dst'.*leaves the folder"):
        build_manifest("utkface", "rs", aligned)
    labels = tmp_path / "labels.csv"
    labels.write_text("file,years\nok.jpg,30\n/etc/hostname,40\n")
    options = LabelOptions(columns=CsvColumns(path="file", age="years"))
    with pytest.raises(TableError, match=r"labels\.csv, row 3, column 'path'.*leaves the folder"):
        build_manifest("csv", "rs", tmp_path, labels=labels, source="pre-aligned", options=options)


def test_links_placed_inside_the_folder_keep_working(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.jpg").write_bytes(b"jpeg")
    root = tmp_path / "aligned"
    root.mkdir()
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    manifest = tmp_path / "rs.csv"
    manifest.write_text(MANIFEST_HEADER + "linked/x.jpg,30,,,0,-1\n")
    assert read_manifest(manifest, images_root=root)["path"].tolist() == ["linked/x.jpg"]


# 2. Nothing is overwritten that the user did not name ------------------------------------------------------

def test_a_curve_never_replaces_a_file_named_like_its_table(tmp_path: Path) -> None:
    table = tmp_path / "predictions.csv"
    table.write_text(PREDICTIONS)
    manifest = tmp_path / "man" / "se.csv"
    manifest.parent.mkdir()
    manifest.write_text(MANIFEST_HEADER + "a.jpg,30,,s1,0,-1\n")
    before = manifest.read_bytes()
    with pytest.raises(FaceageError, match=r"--curve .*se\.png would also write .*se\.csv"):
        evaluate([table], curve=tmp_path / "man" / "se.png")
    assert manifest.read_bytes() == before and not (tmp_path / "man" / "se.png").exists()
    evaluate([table], curve=tmp_path / "cs.png")
    evaluate([table], curve=tmp_path / "cs.png")  # its own earlier plot and table are replaced
    (tmp_path / "r" / "cs.png").parent.mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "r" / "cs.png")  # someone else's picture
    with pytest.raises(FaceageError, match=r"--report .*report\.md would also write .*cs\.png"):
        evaluate([table], report=tmp_path / "r" / "report.md")


def test_a_named_output_never_replaces_an_input_or_another_stages_table(tmp_path: Path) -> None:
    table = tmp_path / "predictions.csv"
    table.write_text(PREDICTIONS)
    manifest = tmp_path / "se.csv"
    manifest.write_text(MANIFEST_HEADER + "a.jpg,30,,s1,0,-1\n")
    with pytest.raises(FaceageError, match=r"--json .*se\.csv: holds a manifest table"):
        evaluate([table], json_path=manifest)
    with pytest.raises(FaceageError, match=r"--out .*predictions\.csv: holds a predictions table"):
        check_out(table)
    faces = tmp_path / "faces.csv"
    faces.write_text(",".join(FACES.names()) + "\n")
    with pytest.raises(FaceageError, match="holds a faces table"):
        check_out(faces)
    result = build_manifest("fgnet", "lopo", None, labels=_fgnet_labels(tmp_path), source="labels-only")
    with pytest.raises(FaceageError, match="holds a predictions table"):
        write_manifest(result, table)
    write_manifest(result, manifest)  # an earlier manifest may be replaced by a new one
    assert read_manifest(manifest)["fold"].nunique() == 2


def _fgnet_labels(tmp_path: Path) -> Path:
    labels = tmp_path / "fgnet.csv"
    labels.write_text("file\n001A02.JPG\n001A10.JPG\n002A05.JPG\n")
    return labels


def test_drawn_copies_never_replace_a_file_faceage_did_not_draw(tmp_path: Path) -> None:
    photo = tmp_path / "in" / "x.jpg"
    photo.parent.mkdir()
    Image.new("RGB", (8, 8)).save(photo)
    out = tmp_path / "drawn"
    out.mkdir()
    Image.new("RGB", (8, 8), "red").save(out / "x.jpg")  # the user's own file
    foreign = (out / "x.jpg").read_bytes()
    targets = draw_targets({photo: "x.jpg"}, out)
    assert targets[photo] == out / "x~2.jpg"
    save_drawn(load_rgb(photo), [], targets[photo])
    assert (out / "x.jpg").read_bytes() == foreign and is_drawn(out / "x~2.jpg")
    (out / "x.jpg").unlink()
    save_drawn(load_rgb(photo), [], out / "x.jpg")
    assert draw_targets({photo: "x.jpg"}, out)[photo] == out / "x.jpg"  # our own copy is redrawn in place
    aligned = tmp_path / "aligned"
    aligned.mkdir()
    (aligned / "faces.csv").write_text(",".join(FACES.names()) + "\n")
    with pytest.raises(FaceageError, match="is an aligned folder"):
        draw_targets({photo: "x.jpg"}, aligned / "sub")


# 3. One writer per output folder ---------------------------------------------------------------------------

def _hold(folder: Path, name: str = ".faceage.lock", shared: bool = False) -> subprocess.Popen[str]:
    """Another process holding `folder`'s lock until killed."""
    code = ("import time; from pathlib import Path; from faceage.core.lock import folder_lock\n"
            f"with folder_lock(Path({str(folder)!r}), 'x', name={name!r}, shared={shared}):\n"
            "    print('held', flush=True); time.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_busy_folder_is_refused_naming_the_holder_and_freed_by_kill_9(tmp_path: Path) -> None:
    holder = _hold(tmp_path / "out")
    try:
        with pytest.raises(BusyError, match=rf"out: the job is in use by another faceage process \(pid "
                                            rf"{holder.pid} on "), folder_lock(tmp_path / "out", "the job"):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with folder_lock(tmp_path / "out", "the job"):  # a lock dies with its process
        pass


def test_two_aligns_into_one_folder_and_two_trainings_into_one_run(morph_dir: Path, tmp_path: Path) -> None:
    src, dst = _morph_src(morph_dir, tmp_path), tmp_path / "aligned"
    holder = _hold(dst)
    try:
        with pytest.raises(BusyError, match="the align output is in use"):
            align_folder(src, dst, AlignSettings(size=128), workers=1, progress=False)
        assert not (dst / "faces.csv").exists()
    finally:
        holder.kill()
        holder.wait()
    run = tmp_path / "run"
    holder = _hold(run)
    try:
        with pytest.raises(BusyError, match="the run folder is in use"):
            run_training(resolve_config(flags={"out": str(run), "images": str(dst), "device": "cpu"}))
    finally:
        holder.kill()
        holder.wait()


def test_align_shards_share_the_folder_but_exclude_an_unsharded_run(morph_dir: Path, tmp_path: Path) -> None:
    src, dst = _morph_src(morph_dir, tmp_path), tmp_path / "aligned"
    holder = _hold(dst, shared=True)  # another shard's run
    try:
        summary = align_folder(src, dst, workers=1, shard=(0, 2), progress=False)
        assert summary.table.name == "faces.shard-0-of-2.csv"
        with pytest.raises(BusyError, match="in use by another faceage process"):
            align_folder(src, dst, workers=1, progress=False)
    finally:
        holder.kill()
        holder.wait()


# 4. Every job finishes whatever the folder holds, and every failure is a message ---------------------------

def test_a_fifo_is_listed_never_opened(morph_dir: Path, tmp_path: Path) -> None:
    src = _morph_src(morph_dir, tmp_path, n=2)
    os.mkfifo(src / "p.jpg")
    outcome: list[object] = []
    reader = threading.Thread(target=lambda: outcome.append(_load(src / "p.jpg")), daemon=True)
    reader.start()
    reader.join(10)
    assert outcome and isinstance(outcome[0], ImageLoadError) and "FIFO" in str(outcome[0])
    command = [sys.executable, "-m", "faceage", "align", str(src), str(tmp_path / "out"), "-j", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)  # never hangs
    assert done.returncode == 0, done.stderr
    faces = read_table(tmp_path / "out" / "faces.csv", FACES).set_index("src")
    assert faces.loc["p.jpg", "status"] == "unreadable" and (faces["status"] == "ok").sum() == 2


def _load(path: Path) -> object:
    try:
        return load_rgb(path)
    except ImageLoadError as exc:
        return exc


def test_the_longest_legal_names_are_written_atomically(morph_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    photo = sorted((morph_dir / "images").glob("*.JPG"))[0]
    long_name = "a" * 246 + ".jpeg"  # 251 bytes; its crop `….jpg` has 250
    (src / long_name).symlink_to(photo)
    summary = align_folder(src, tmp_path / "out", workers=1, progress=False)
    assert summary.counts == {"ok": 1} and (tmp_path / "out" / ("a" * 246 + ".jpg")).is_file()


def test_a_full_disk_is_one_message_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", full)
    with pytest.raises(atomic.OutputError, match=r"best\.pt: cannot write it \(No space left on device\); "
                                                 r"free disk space"):
        save_checkpoint(tmp_path / "best.pt", {"x": 1})
    assert list(tmp_path.iterdir()) == []  # no temporary left behind
    monkeypatch.undo()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(FaceageError, match=r"--out .*p\.csv: cannot write it.*a file stands where a folder"):
        check_out(tmp_path / "afile" / "p.csv")  # checked before any prediction is computed


def test_torch_full_disk_errors_name_the_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import faceage.model.checkpoint as checkpoint

    def torch_full(obj: object, path: object) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc] PytorchStreamWriter failed writing file")

    monkeypatch.setattr(checkpoint.torch, "save", torch_full)
    with pytest.raises(atomic.OutputError, match=r"last\.pt: cannot write it \(.*PytorchStreamWriter"):
        save_checkpoint(tmp_path / "last.pt", {"x": 1})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("column", "table"), [("fold", "predictions"), ("src_bytes", "faces")])
def test_huge_whole_numbers_are_a_message(tmp_path: Path, column: str, table: str) -> None:
    if table == "faces":
        path = tmp_path / "faces.csv"
        row = dict.fromkeys(FACES.names(), "") | {"src": "a.jpg", "status": "no_face", "n_faces": 0,
                                                  "detector": "d", "settings": "s", "src_bytes": "1e30",
                                                  "src_mtime_ns": 1}
        pd.DataFrame([row], columns=FACES.names()).to_csv(path, index=False)
        with pytest.raises(TableError, match=rf"row 2, column '{column}': '1e30' is too large"):
            read_table(path, FACES)
    else:
        path = tmp_path / "p.csv"
        path.write_text(PREDICTIONS.replace("3.0,0", "3.0,1e30"))
        with pytest.raises(TableError, match=rf"row 3, column '{column}': '1e30' is too large"):
            evaluate([path])


# 5. A run folder means what it says ------------------------------------------------------------------------

def test_checkpoints_without_their_settings_are_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "fold0").mkdir(parents=True)
    (run / "fold0" / "last.pt").write_bytes(b"state")
    flags = {"out": str(run), "lr": 0.5, "seed": 3}
    with pytest.raises(FaceageError, match=r"holds checkpoints but no config\.yaml"):
        resolve_run_config(None, flags, resume=True)
    manifest = tmp_path / "se.csv"
    manifest.write_text(MANIFEST_HEADER)
    with pytest.raises(FaceageError, match=r"holds checkpoints but no manifest\.sha256"):
        RunFolder(run).check_manifest(manifest)


def test_temporaries_a_kill_left_are_not_outputs_and_are_cleaned(morph_dir: Path, tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    (run.root / "fold0").mkdir(parents=True)
    (run.root / "fold0" / ".best.pt.k3x_9abc.tmp.pt").write_bytes(b"half")
    assert not run.has_checkpoints()
    src, dst = _morph_src(morph_dir, tmp_path, n=2), tmp_path / "aligned"
    dst.mkdir()
    left = dst / ".052085_0M45.jpg.ab12cd34.tmp.jpg"
    left.write_bytes(b"half a crop")
    assert list_images(dst) == []
    align_folder(src, dst, workers=1, progress=False)
    assert not left.exists() and len(list_images(dst)) == 2


# 6. No orphans, no stale walks -----------------------------------------------------------------------------

def test_align_workers_exit_when_the_parent_is_killed(morph_dir: Path, tmp_path: Path) -> None:
    images = morph_dir / "images"
    parent = subprocess.Popen([sys.executable, "-m", "faceage", "align", str(images), str(tmp_path / "out"),
                               "-j", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while len(descendants := _descendants(parent.pid)) < 3 and time.time() < deadline:  # server + 2 workers
        time.sleep(0.2)
    assert len(descendants) >= 3, descendants
    parent.kill()
    parent.wait()
    deadline = time.time() + 10
    while (alive := [p for p in descendants if _alive(p)]) and time.time() < deadline:
        time.sleep(0.2)
    assert alive == []


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_folder_faceage_aligned_into_is_never_walked_as_source(morph_dir: Path, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    src = _morph_src(morph_dir, tmp_path, n=2)
    align_folder(src, src / "old_aligned", workers=1, progress=False)  # an earlier run, inside SRC
    summary = align_folder(src, tmp_path / "new", workers=1, progress=False)
    assert summary.total == 2 and "old_aligned: skipped" in caplog.text
    with pytest.raises(FaceageError, match="is an aligned folder"):
        align_folder(src / "old_aligned", tmp_path / "again", workers=1, progress=False)


def test_eval_refuses_a_repeated_column_and_an_absurd_prediction(tmp_path: Path) -> None:
    repeated = tmp_path / "r.csv"
    repeated.write_text("path,age,pred,pred\na.jpg,30,31,99\n")
    with pytest.raises(TableError, match=r"\['pred'\] appear more than once"):
        evaluate([repeated])
    absurd = tmp_path / "a.csv"
    absurd.write_text("path,age,pred\na.jpg,30,1e308\nb.jpg,40,41\n")
    with pytest.raises(TableError, match=r"row 2, column 'pred': 1e\+308 is outside the allowed range"):
        evaluate([absurd])
