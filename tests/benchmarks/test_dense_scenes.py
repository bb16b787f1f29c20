import os

import cv2
import numpy as np
import pytest

from benchmark_scripts import load_benchmark
from fewshot_det.data.readers.voc import load_voc
from fewshot_fixtures import EDP_CLASSES, make_edp_tree


def test_mosaics_keep_every_object_at_its_place_in_its_tile(tmp_path):
    src = make_edp_tree(str(tmp_path / "edp"), num_train=2, num_test=9)  # 80 x 96 images
    dst = load_benchmark("dense_scenes").write_mosaics(src, str(tmp_path / "dense"), grid=2)
    tiles, _ = load_voc(src, "test")
    mosaics, names = load_voc(dst, "test")
    assert names == EDP_CLASSES
    assert len(mosaics) == 2  # 9 images -> 2 full 2x2 mosaics, the 9th dropped
    assert (mosaics[1]["width"], mosaics[1]["height"]) == (192, 160)
    # tile 3 of mosaic 1 (bottom right) is test image 7, shifted by (96, 80)
    want = [(a["category_id"], [a["bbox"][0] + 96, a["bbox"][1] + 80,
                                a["bbox"][2] + 96, a["bbox"][3] + 80])
            for a in tiles[7]["annotations"]]
    got = [(a["category_id"], a["bbox"]) for a in mosaics[1]["annotations"]][-len(want):]
    assert got == want
    assert len(mosaics[0]["annotations"]) == sum(len(t["annotations"]) for t in tiles[:4])
    image = cv2.imread(mosaics[1]["file_name"]).astype(np.float32)
    tile = cv2.imread(tiles[7]["file_name"]).astype(np.float32)
    other = cv2.imread(tiles[6]["file_name"]).astype(np.float32)
    # the same pixels up to JPEG re-encoding (large on these noise images), not another tile's
    assert np.abs(image[80:, 96:] - tile).mean() < 10 < np.abs(image[80:, 96:] - other).mean()


def test_mosaics_are_reused_and_a_different_grid_is_refused(tmp_path):
    dense = load_benchmark("dense_scenes")
    src = make_edp_tree(str(tmp_path / "edp"), num_train=2, num_test=4)
    dst = dense.write_mosaics(src, str(tmp_path / "dense"), grid=2)
    stamp = os.path.getmtime(os.path.join(dst, "JPEGImages", "mosaic_00000.jpg"))
    assert dense.write_mosaics(src, dst, grid=2) == dst
    assert os.path.getmtime(os.path.join(dst, "JPEGImages", "mosaic_00000.jpg")) == stamp
    with pytest.raises(FileExistsError, match="another source or grid"):
        dense.write_mosaics(src, dst, grid=1)
    with pytest.raises(ValueError, match="needs 9"):
        dense.write_mosaics(src, str(tmp_path / "dense3"), grid=3)
    assert not os.path.exists(tmp_path / "dense3")
