"""Boxes with labels that never cover each other (``utils.draw``)."""
import numpy as np

from fewshot_det.utils.draw import class_color, draw_boxes, place_label


def _overlap(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_labels_of_overlapping_boxes_do_not_cover_each_other():
    boxes = [(20, 30, 120, 90), (22, 32, 118, 95), (25, 28, 100, 80), (20, 30, 120, 90)]
    taken = []
    for box in boxes:
        rect = place_label(box, (60, 14), taken, 200, 160)
        assert all(not _overlap(rect, t) for t in taken)
        assert 0 <= rect[0] and rect[2] <= 160 and 0 <= rect[1] and rect[3] <= 200
        taken.append(rect)


def test_a_label_at_the_top_edge_stays_inside_the_image():
    rect = place_label((5, 0, 50, 40), (40, 14), [], 100, 100)
    assert rect[1] >= 0 and rect[3] <= 100


def test_drawing_keeps_the_input_and_marks_the_boxes():
    image = np.zeros((100, 120, 3), np.uint8)
    out = draw_boxes(image, [(10, 20, 60, 80), (12, 22, 62, 82)], ["a 0.90", "b 0.80"],
                     [class_color("a"), (0, 0, 255)], dashed=[False, True])
    assert image.max() == 0 and out.max() > 0
    assert class_color("a") == class_color("a") != class_color("b")
