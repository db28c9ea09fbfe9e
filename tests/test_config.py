"""The train config: paper defaults, defaults < recipe < flags, checks, recipes, and resume's refusals."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import timm
import yaml

from faceage.core.errors import FaceageError
from faceage.train.config import TrainConfig, load_saved_config, resolve_config, resume_conflicts
from faceage.train.runs import resolve_run_config

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"


def _recipe(tmp_path: Path, settings: dict[str, object], name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


def test_defaults_are_the_papers_settings() -> None:
    cfg = resolve_config(None, {})
    assert (cfg.lr, cfg.momentum, cfg.batch_size) == (0.001, 0.9, 64)
    assert (cfg.schedule, cfg.step_size, cfg.gamma) == ("step", 15, 0.1)
    assert (cfg.img_size, cfg.resize) == (224, 256)
    assert (cfg.loss, cfg.lambda1, cfg.lambda2) == ("mv", 0.2, 0.05)


def test_precedence_defaults_then_recipe_then_flags(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, {"backbone": "resnet50", "lr": 0.01, "epochs": 12, "batch-size": 32})
    cfg = resolve_config(recipe, {"lr": 0.05, "epochs": None, "out": tmp_path / "run"})
    assert cfg.backbone == "resnet50"  # recipe over default
    assert cfg.lr == 0.05  # flag over recipe
    assert cfg.epochs == 12  # a flag left at None is not given
    assert cfg.batch_size == 32  # hyphenated keys are accepted
    assert cfg.momentum == 0.9  # default where neither says
    assert cfg.out == str((tmp_path / "run").absolute())
    assert cfg.manifest == str(Path("manifests/morph2/se.csv").absolute())


def test_default_run_folder_and_manifest_follow_dataset_protocol_backbone_loss(tmp_path: Path) -> None:
    cfg = resolve_config(None, {"dataset": "fgnet", "protocol": "lopo", "backbone": "resnet50", "loss": "l2"})
    assert Path(cfg.manifest or "").parts[-3:] == ("manifests", "fgnet", "lopo.csv")
    assert Path(cfg.out or "").parts[-2:] == ("runs", "fgnet-lopo-resnet50-l2")


def test_fold_from_the_command_line_is_a_number_or_all() -> None:
    assert resolve_config(None, {"fold": "3"}).fold == 3
    assert resolve_config(None, {"fold": "all"}).fold is None
    with pytest.raises(FaceageError, match="'fold' must be a whole number"):
        resolve_config(None, {"fold": "first"})


def _manifest(path: Path, protocol: str | None, dataset: str = "morph2") -> Path:
    row = {"path": "a.jpg", "age": 30, "age_std": "", "subject": "s1", "fold": 0, "val_fold": -1}
    if protocol is not None:
        row |= {"dataset": dataset, "protocol": protocol}
    path.write_text(",".join(row) + "\n" + ",".join(map(str, row.values())) + "\n", encoding="utf-8")
    return path


def test_protocol_and_dataset_are_the_ones_the_manifest_records_whatever_its_name(tmp_path: Path) -> None:
    rs = _manifest(tmp_path / "big.csv", "rs", dataset="utkface")
    cfg = resolve_config(None, {"manifest": rs})
    assert (cfg.protocol, cfg.dataset) == ("rs", "utkface")
    assert Path(cfg.out or "").name == "utkface-rs-vgg16_bn-mv"
    assert resolve_config(None, {"manifest": rs, "protocol": "rs"}).protocol == "rs"
    with pytest.raises(FaceageError, match=r"big\.csv is a rs manifest .*not se"):
        resolve_config(None, {"manifest": rs, "protocol": "se"})
    with pytest.raises(FaceageError, match="not se"):  # a recipe's protocol is checked alike
        resolve_config(_recipe(tmp_path, {"protocol": "se"}), {"manifest": rs})
    named_se = _manifest(tmp_path / "se.csv", "rs")  # the file name says nothing
    assert resolve_config(None, {"manifest": named_se}).protocol == "rs"


def test_a_manifest_that_records_no_protocol_trains_as_told_and_the_default_manifest_is_se(
        tmp_path: Path) -> None:
    old = _manifest(tmp_path / "rs.csv", None)
    assert resolve_config(None, {"manifest": old}).protocol is None  # no guess from the file name
    assert resolve_config(None, {"manifest": old, "protocol": "lopo"}).protocol == "lopo"
    assert resolve_config(None, {}).protocol == "se"


def test_recipe_none_means_random_init(tmp_path: Path) -> None:
    assert resolve_config(_recipe(tmp_path, {"pretrained": None})).pretrained is None
    assert resolve_config(None, {"pretrained": "none"}).pretrained is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"learning_rate": 0.1}, "unknown setting 'learning_rate'"),
        ({"epochs": "ten"}, "'epochs' must be a whole number"),
        ({"epochs": 2.5}, "'epochs' must be a whole number"),
        ({"compile": "yes"}, "'compile' must be true or false"),
        ({"loss": "huber"}, "loss must be one of mv, softmax, l2"),
        ({"protocol": "SE"}, "protocol must be one of rs, se, lopo, official, not 'SE'"),  # no leak check
        ({"schedule": "poly"}, "schedule must be one of step, cosine"),
        ({"img_size": 300}, "img_size (the crop, 300) may not exceed resize (256)"),
        ({"lr": 0}, "lr must be positive"),
        ({"age_balance": 1.5}, "age_balance must lie in [0, 1], not 1.5"),
        ({"source_balance": -0.5}, "source_balance must lie in [0, 1], not -0.5"),
        ({"source_weights": "morph"}, "source_weights: 'morph' is not NAME=WEIGHT with a positive weight"),
        ({"source_weights": "morph=0"}, "'morph=0' is not NAME=WEIGHT with a positive weight"),
        ({"source_weights": "morph=2,=3"}, "'=3' is not NAME=WEIGHT"),
        ({"source_weights": "morph=nan"}, "'morph=nan' is not NAME=WEIGHT"),
        ({"source_weights": "morph=2, morph=3"}, "source 'morph' is given twice"),
        ({"device": "tpu"}, "device must be auto, cpu, cuda or cuda:N"),
        ({"backbone": None}, "'backbone' may not be empty"),
    ],
)
def test_bad_recipe_values_are_refused_naming_the_file(tmp_path: Path, settings: dict, message: str) -> None:
    recipe = _recipe(tmp_path, settings)
    with pytest.raises(FaceageError) as err:
        resolve_config(recipe)
    assert message in str(err.value)
    assert str(recipe) in str(err.value)


def test_a_recipe_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- lr\n- 0.1\n", encoding="utf-8")
    with pytest.raises(FaceageError, match="must be a mapping"):
        resolve_config(path)
    with pytest.raises(FaceageError, match="no such recipe"):
        resolve_config(tmp_path / "missing.yaml")


def test_saved_config_round_trips(tmp_path: Path) -> None:
    flags = {"backbone": "resnet50", "fold": 2, "out": tmp_path / "run", "pretrained": "none"}
    cfg = resolve_config(None, flags)
    path = tmp_path / "config.yaml"
    path.write_text(cfg.to_yaml(), encoding="utf-8")
    assert load_saved_config(path) == cfg


def test_every_recipe_loads_into_a_valid_config() -> None:
    recipes = sorted(PIPELINES.glob("*.yaml"))
    assert len(recipes) >= 11
    seen = set()
    for recipe in recipes:
        cfg = resolve_config(recipe)
        assert timm.is_model(cfg.backbone), recipe
        seen.add((cfg.dataset, cfg.protocol, cfg.backbone, cfg.loss))
    experiments = [("morph2", "rs"), ("morph2", "se"), ("fgnet", "lopo"), ("clap2016", "official")]
    for dataset, protocol in experiments:
        for backbone in ("vgg16_bn", "resnet50"):
            assert (dataset, protocol, backbone, "mv") in seen
    assert {("morph2", "se", "vgg16_bn", "softmax"), ("morph2", "se", "vgg16_bn", "l2")} <= seen


def test_resume_may_add_epochs_under_step_but_not_change_results() -> None:
    saved = TrainConfig(epochs=4)
    harmless = dataclasses.replace(saved, epochs=8, device="cpu", workers=3, fold=1, compile=True)
    assert resume_conflicts(harmless, saved) == []
    assert resume_conflicts(dataclasses.replace(saved, epochs=2), saved) == ["epochs: 4 → 2"]
    assert resume_conflicts(dataclasses.replace(saved, lr=0.1), saved) == ["lr: 0.001 → 0.1"]
    cosine = TrainConfig(epochs=4, schedule="cosine")
    assert resume_conflicts(dataclasses.replace(cosine, epochs=8), cosine) == ["epochs: 4 → 8"]


def test_an_existing_run_needs_resume_and_keeps_its_settings(tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = resolve_run_config(None, {"out": run, "lr": 0.01, "backbone": "resnet50"}, resume=False)
    (run / "fold0").mkdir(parents=True)
    (run / "config.yaml").write_text(first.to_yaml(), encoding="utf-8")
    (run / "fold0" / "last.pt").write_bytes(b"a trained fold")
    with pytest.raises(FaceageError, match="already holds a run"):
        resolve_run_config(None, {"out": run, "lr": 0.01, "backbone": "resnet50"}, resume=False)
    assert resolve_run_config(None, {"out": run}, resume=True) == first  # the folder alone is enough
    with pytest.raises(FaceageError, match=r"lr: 0.01 → 0.5"):
        resolve_run_config(None, {"out": run, "lr": 0.5}, resume=True)
    assert resolve_run_config(None, {"out": run, "epochs": 40}, resume=True).epochs == 40


def test_a_run_that_never_trained_starts_afresh_with_new_settings(tmp_path: Path) -> None:
    """config.yaml without any checkpoint (the run failed before training, e.g. no hub weights offline):
    rerunning with other settings is not refused, with or without --resume."""
    run = tmp_path / "run"
    run.mkdir()
    failed = resolve_run_config(None, {"out": run, "lr": 0.01, "pretrained": "timm"}, resume=False)
    (run / "config.yaml").write_text(failed.to_yaml(), encoding="utf-8")
    retry = resolve_run_config(None, {"out": run, "lr": 0.01, "pretrained": "none"}, resume=False)
    assert retry.pretrained is None and retry.lr == 0.01
    resumed = resolve_run_config(None, {"out": run, "pretrained": "none"}, resume=True)
    assert resumed.pretrained is None and resumed.lr == 0.01  # the saved settings < the flags


def test_a_pretrained_weights_file_is_saved_as_an_absolute_path(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Like the other paths: a resumed run started from another folder still finds the weights file."""
    monkeypatch.chdir(tmp_path)
    assert resolve_config(None, {"pretrained": "weights/lite0.pth"}).pretrained == str(
        tmp_path / "weights" / "lite0.pth")
    assert resolve_config(None, {"pretrained": "~/w.safetensors"}).pretrained == str(
        Path("~/w.safetensors").expanduser())
    assert [resolve_config(None, {"pretrained": s}).pretrained for s in ("timm", "pypi")] == ["timm", "pypi"]


def test_train_options_are_generated_from_the_settings() -> None:
    """Each TrainConfig field is one `faceage train` option, with the field's help and default shown."""
    import typer.main

    from faceage.cli import app

    command = typer.main.get_command(app).commands["train"]  # type: ignore[attr-defined]
    options = {p.name: p for p in command.params}
    settings = {f.name: f for f in dataclasses.fields(TrainConfig)}
    assert set(options) == {*settings, "config", "resume"}
    for name, setting in settings.items():
        assert options[name].help == setting.metadata["help"], name
        assert options[name].default is None, name  # not given: the recipe or the saved run decides
    assert options["epochs"].show_default == "30" and options["lr"].show_default == "0.001"
    assert "--no-compile" in options["compile"].secondary_opts and "-o" in options["out"].opts


def test_train_flags_reach_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import faceage.train.fit as fit
    from faceage.cli import app

    seen: list[TrainConfig] = []
    monkeypatch.setattr(fit, "run_training", lambda cfg: seen.append(cfg) or fit.TrainResult("x", [], False))
    result = CliRunner().invoke(app, ["train", "--epochs", "3", "--batch-size", "16", "--no-compile",
                                      "--fold", "all", "-o", str(tmp_path / "run"), "--lambda2", "0.1"])
    assert result.exit_code == 0, result.output
    assert (seen[0].epochs, seen[0].batch_size, seen[0].compile, seen[0].fold) == (3, 16, False, None)
    assert (seen[0].lambda2, seen[0].out) == (0.1, str(tmp_path / "run"))
