"""Few-shot data: class splits as data, a seeded K-shot sampler with TFA semantics, and
TFA-compatible split files. No torch here."""
from .class_splits import (
    CLASS_SPLITS,
    COCO_CLASSES,
    COCO_NOVEL_CLASSES,
    SYNTHETIC_CLASSES,
    SYNTHETIC_NOVEL_CLASSES,
    VOC_CLASSES,
    available_splits,
    get_class_split,
    resolve_class_split,
)
from .kshot import (
    FewShotWarning,
    build_fewshot_dataset,
    merge_class_splits,
    sample_class_shots,
    sample_kshot,
    short_classes,
)
from .prepare import fewshot_records, prepare_fewshot_splits
from .tfa_files import (
    find_split_file,
    load_class_splits,
    load_fewshot_dataset,
    read_coco_split,
    read_voc_split,
    split_file_name,
    split_file_path,
    write_class_splits,
    write_coco_split,
    write_voc_split,
)

__all__ = [
    "CLASS_SPLITS", "COCO_CLASSES", "COCO_NOVEL_CLASSES", "SYNTHETIC_CLASSES",
    "SYNTHETIC_NOVEL_CLASSES", "VOC_CLASSES", "available_splits", "get_class_split",
    "resolve_class_split", "FewShotWarning", "build_fewshot_dataset", "merge_class_splits",
    "sample_class_shots", "sample_kshot", "short_classes", "prepare_fewshot_splits",
    "fewshot_records", "find_split_file", "load_class_splits", "load_fewshot_dataset", "read_coco_split",
    "read_voc_split", "split_file_name", "split_file_path", "write_class_splits",
    "write_coco_split", "write_voc_split",
]
