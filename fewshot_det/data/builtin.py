"""Built-in dataset names for the standard layouts under the dataset root.

The root is ``$FEWSHOT_DATASETS`` when set, else ``./datasets``:

    VOC2007/ VOC2012/                        (Annotations, JPEGImages, ImageSets/Main)
    coco/annotations/instances_{train,val}2017.json, coco/{train,val}2017/
"""
from __future__ import annotations

import os

from .catalog import DatasetCatalog
from .fewshot.class_splits import VOC_CLASSES
from .readers import load_coco_json, load_voc
from .root import dataset_root
from .synthetic import register_synthetic

__all__ = ["dataset_root", "register_builtin"]


def _voc(year: str, split: str):
    def load(check_images: bool = True, box_policy: str = "clip"):
        root = os.path.join(dataset_root(), f"VOC{year}")
        records, classes = load_voc(root, split, VOC_CLASSES, check_images=check_images,
                                    box_policy=box_policy)
        return records, {"thing_classes": classes, "evaluator_type": "voc",
                         "thing_dataset_id_to_contiguous_id": {i: i for i in range(1, 21)},
                         "dataset_root": root, "split": split, "year": int(year)}
    return load


def _coco(split: str):
    def load(check_images: bool = True, box_policy: str = "clip"):
        root = os.path.join(dataset_root(), "coco")
        return load_coco_json(os.path.join(root, "annotations", f"instances_{split}.json"),
                              os.path.join(root, split), check_images=check_images,
                              box_policy=box_policy)
    return load


def register_builtin() -> None:
    """Register voc_{2007,2012}_{train,val,trainval,test}, coco_2017_{train,val} and the
    synthetic shapes_{train,test,trainval}[_coco] (generated on first use)."""
    register_synthetic()
    for year, splits in (("2007", ("train", "val", "trainval", "test")),
                         ("2012", ("train", "val", "trainval"))):
        for split in splits:
            name = f"voc_{year}_{split}"
            if name not in DatasetCatalog:
                DatasetCatalog.register(name, _voc(year, split))
    for split in ("train2017", "val2017"):
        name = f"coco_2017_{split[:-4]}"
        if name not in DatasetCatalog:
            DatasetCatalog.register(name, _coco(split))
