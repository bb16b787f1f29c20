"""Large synthetic scenes with small objects (``data.synthetic_large``)."""
import numpy as np
import pytest

from fewshot_det.data import get_dataset
from fewshot_det.data.fewshot.class_splits import SYNTHETIC_CLASSES
from fewshot_det.data.synthetic_large import generate_large_scenes, render_large_scene


def test_small_separate_objects_of_the_chosen_classes():
    img, objects = render_large_scene(np.random.default_rng(3), 640, 480,
                                      classes=["circle", "square"], num_objects=(10, 12))
    assert img.shape == (480, 640, 3) and img.dtype == np.uint8
    assert 8 <= len(objects) <= 12 and {o["name"] for o in objects} <= {"circle", "square"}
    boxes = np.array([o["box"] for o in objects])
    sides = boxes[:, 2:] - boxes[:, :2] + 1
    assert sides.max() <= 48 and sides.min() >= 6
    for i, a in enumerate(boxes):  # no two boxes overlap
        for b in boxes[i + 1:]:
            assert a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]
    again, _ = render_large_scene(np.random.default_rng(3), 640, 480,
                                  classes=["circle", "square"], num_objects=(10, 12))
    assert np.array_equal(img, again)


def test_written_as_a_voc_test_split_with_every_shape_class(tmp_path):
    spec = generate_large_scenes(str(tmp_path), 2, width=400, height=300, classes=["ring"])
    records, metadata = get_dataset(spec)
    assert list(metadata.thing_classes) == list(SYNTHETIC_CLASSES)
    assert len(records) == 2 and records[0]["width"] == 400 and records[0]["height"] == 300
    ring = SYNTHETIC_CLASSES.index("ring") + 1
    assert {a["category_id"] for r in records for a in r["annotations"]} == {ring}
    with pytest.raises(ValueError, match="unknown classes \\['blob'\\]"):
        generate_large_scenes(str(tmp_path / "x"), 1, classes=["blob"])
