"""The K-shot training set of a config: sampled once per seed, split files in one default
folder, short classes reported, and loaders that take the records instead of reading."""
import logging
import os
import warnings

import pytest

import fewshot_det
from fewshot_det.data import build
from fewshot_det.data.catalog import Metadata
from fewshot_det.data.fewshot import FewShotWarning, short_classes
from fewshot_fixtures import make_edp_tree


@pytest.fixture(scope="module")
def edp(tmp_path_factory):
    return make_edp_tree(str(tmp_path_factory.mktemp("EDP")))


def kshot_cfg(edp, out, *opts):
    cfg = fewshot_det.get_cfg()
    cfg.merge_from_list([
        "DATASETS.TRAIN", f"('voc:{edp}:trainval',)", "DATALOADER.NUM_WORKERS", "0",
        "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "128",
        "SOLVER.IMS_PER_BATCH", "2", "OUTPUT_DIR", str(out),
        "FEWSHOT.NOVEL_CLASSES", "['insulator', 'bird_nest']", "FEWSHOT.SHOTS", "2",
        *opts])
    return cfg


def test_short_classes_counts_instances():
    records = [{"annotations": [{"category_id": 1}, {"category_id": 1}, {"category_id": 2}]},
               {"annotations": [{"category_id": 1}]}]
    assert short_classes(records, ["a", "b", "c"], 2) == {"b": 1, "c": 0}
    assert short_classes(records, ["a", "b", "c"], 1) == {"c": 0}


def test_split_files_default_to_output_dir_splits(edp, tmp_path):
    cfg = kshot_cfg(edp, tmp_path / "run")
    assert build.fewshot_split_dir(cfg) == os.path.join(str(tmp_path / "run"), "splits")
    records, metadata = build.training_records(cfg)
    counts = {n: 0 for n in metadata.thing_classes}
    for r in records:
        for a in r["annotations"]:
            counts[metadata.thing_classes[a["category_id"] - 1]] += 1
    assert counts == {"pole": 2, "insulator": 2, "bird_nest": 2}
    split = tmp_path / "run" / "splits" / "seed0" / "box_2shot_insulator_train.txt"
    assert split.is_file()
    cfg.FEWSHOT.SPLIT_DIR = str(tmp_path / "mine")
    assert build.fewshot_split_dir(cfg) == str(tmp_path / "mine")
    again, _ = build.training_records(cfg)  # sampled again, into the configured folder
    assert (tmp_path / "mine" / "seed0" / "box_2shot_insulator_train.txt").read_text() == \
        split.read_text()
    assert again == records


def test_novel_classes_short_of_shots_warn_base_ones_are_logged(edp, tmp_path, caplog):
    cfg = kshot_cfg(edp, tmp_path, "FEWSHOT.SHOTS", "9")  # every class has 8 instances
    with caplog.at_level(logging.WARNING), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build.training_records(cfg)
    raised = sorted(str(w.message) for w in caught if w.category is FewShotWarning)
    assert raised == [
        "few-shot split seed 0: novel class 'bird_nest' has only 8 of the 9 requested instances",
        "few-shot split seed 0: novel class 'insulator' has only 8 of the 9 requested instances"]
    assert "base class 'pole' has only 8 of the 9 requested instances" in caplog.text
    assert "!" * 80 in caplog.text
    meta = Metadata("m", thing_classes=["a", "b"], novel_classes=["b"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert build.warn_short_classes([], meta, 1, 3) == ["b"]
    assert [str(w.message) for w in caught] == [
        "few-shot split seed 3: novel class 'b' has only 0 of the 1 requested instances"]


def test_train_loader_takes_given_records_without_reading_the_dataset(edp, tmp_path,
                                                                      monkeypatch):
    cfg = kshot_cfg(edp, tmp_path)
    training_set = build.training_records(cfg)

    def no_reading(*args, **kwargs):
        raise AssertionError("the dataset was read again")

    monkeypatch.setattr(build, "get_dataset", no_reading)
    loader, metadata = build.build_train_loader_from_config(cfg, training_set=training_set)
    assert metadata is training_set[1]
    ids = {r["image_id"] for r in training_set[0]}
    assert {item["image_id"] for item in next(iter(loader))} <= ids
    with pytest.raises(AssertionError, match="read again"):
        build.build_train_loader_from_config(cfg)
