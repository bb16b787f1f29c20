import pytest
import torch

from fewshot_det.modeling.fewshot import PrototypeBank, average_shots
from fewshot_fixtures import query, supports, tiny_model


def test_average_shots_is_the_mean_per_class_in_column_order():
    values = torch.tensor([[1.0, 2.0], [3.0, 4.0], [10.0, 10.0]])
    labels = torch.tensor([2, 2, 5])
    out = average_shots(values, labels, torch.tensor([5, 2]))
    assert out.tolist() == [[10.0, 10.0], [2.0, 3.0]]
    with pytest.raises(ValueError, match="no crop of class ids \\[7\\]"):
        average_shots(values, labels, torch.tensor([7]))


def test_bank_running_mean_and_exact_assignment():
    bank = PrototypeBank(num_classes=3, head_dim=2)
    bank.update(torch.tensor([2]), torch.full((1, 2), 4.0), momentum=0.5)
    assert bank.head[1].tolist() == [4.0, 4.0]  # first sight: copied
    bank.update(torch.tensor([2, 2]), torch.tensor([[0.0, 1.0], [0.0, 3.0]]), momentum=0.5)
    assert bank.head[1].tolist() == [2.0, 3.0]  # 0.5 * old + 0.5 * the batch's mean
    assert bank.count.tolist() == [0, 2, 0]
    p = bank.prototypes(num_images=2)
    assert p.valid.tolist() == [[False, True, False]] * 2 and p.class_ids[1].tolist() == [1, 2, 3]
    bank.assign(torch.tensor([5]), torch.ones(1, 2))  # a new class
    assert bank.num_classes == 5 and bank.count.tolist() == [0, 2, 0, 0, 1]


@pytest.fixture(scope="module")
def model():
    return tiny_model().eval()


def _assert_same(a, b):
    for x, y in zip(a, b):
        assert torch.equal(x["labels"], y["labels"])
        torch.testing.assert_close(x["boxes"], y["boxes"], rtol=0, atol=1e-4)
        torch.testing.assert_close(x["scores"], y["scores"], rtol=0, atol=1e-5)


def test_cached_prototypes_give_the_same_detections_as_recomputing(model, tmp_path):
    sup = supports([1, 2, 3], shots=2, seed=3)
    queries = [query(seed=1, image_id=1), query(h=80, w=112, seed=2, image_id=2)]
    # 1) recomputed: every image carries the support set (encoded during the forward)
    recomputed = model([{**q, "supports": sup} for q in queries])
    assert sum(len(d["boxes"]) for d in recomputed) > 0
    # 2) cached: encoded once into the bank, then plain queries
    assert model.set_supports(sup["images"], sup["boxes"], sup["labels"]) == [1, 2, 3]
    cached = model(queries)
    _assert_same(recomputed, cached)
    # 3) saved to a file and loaded into a fresh model with the same weights
    path = str(tmp_path / "prototypes.pth")
    model.save_prototypes(path)
    other = tiny_model().eval()
    other.load_prototypes(path)
    _assert_same(cached, other(queries))


def test_classes_without_prototype_are_never_detected(model):
    fresh = tiny_model().eval()
    with pytest.raises(ValueError, match="no class prototypes"):
        fresh([query()])
    sup = supports([2], shots=1)
    fresh.set_supports(sup["images"], sup["boxes"], sup["labels"])
    out = fresh([query(seed=4)])[0]
    assert len(out["labels"]) and set(out["labels"].tolist()) == {2}


def test_a_class_added_at_inference_time(model):
    m = tiny_model().eval()
    sup = supports([1, 4], shots=1)  # class 4 > NUM_CLASSES (3)
    m.set_supports(sup["images"], sup["boxes"], sup["labels"])
    assert m.prototype_bank.num_classes == 4
    labels = set(m([query(seed=5)])[0]["labels"].tolist())
    assert labels <= {1, 4} and 4 in labels
