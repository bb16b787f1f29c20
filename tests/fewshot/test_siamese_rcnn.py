import pytest
import torch

from fewshot_det.modeling.fewshot import AttentionRPN
from fewshot_fixtures import query, supports, tiny_cfg, tiny_model


def test_attention_rpn_labels_each_column_with_its_own_class_only():
    cfg = tiny_cfg()
    from fewshot_det.modeling.backbone import ShapeSpec

    shapes = {f"p{i}": ShapeSpec(16, 2 ** i) for i in range(3, 7)}
    rpn = AttentionRPN.from_config(cfg, shapes)
    anchors = torch.tensor([[10.0, 10.0, 50.0, 50.0], [60.0, 10.0, 100.0, 50.0],
                            [0.0, 60.0, 20.0, 80.0]])
    targets = [{"gt_boxes": torch.tensor([[10.0, 10.0, 50.0, 50.0]]),
                "gt_labels": torch.tensor([7])}]
    labels = rpn.label_columns(anchors, targets, torch.tensor([[3, 7, 5]]))
    assert labels.shape == (1, 3, 3)
    assert labels[0, 1].tolist() == [1, 0, 0]  # column 2 = the object's class (7)
    assert labels[0, 0].tolist() == [0, 0, 0] and labels[0, 2].tolist() == [0, 0, 0]


def test_attention_rpn_always_samples_other_class_objects_as_negatives():
    cfg = tiny_cfg("MODEL.RPN.BATCH_SIZE_PER_IMAGE", "2", "MODEL.RPN.POSITIVE_FRACTION", "0.5")
    from fewshot_det.modeling.backbone import ShapeSpec

    rpn = AttentionRPN.from_config(cfg, {f"p{i}": ShapeSpec(16, 2 ** i) for i in range(3, 7)})
    background = torch.tensor([[200.0 + i, 200.0, 210.0 + i, 210.0] for i in range(50)])
    anchors = torch.cat([torch.tensor([[10.0, 10.0, 50.0, 50.0], [60.0, 10.0, 100.0, 50.0]]),
                         background])
    targets = [{"gt_boxes": torch.tensor([[10.0, 10.0, 50.0, 50.0], [60.0, 10.0, 100.0, 50.0]]),
                "gt_labels": torch.tensor([7, 3])}]
    torch.manual_seed(0)
    for _ in range(20):  # whatever the random sample, the class-3 object is a negative
        labels = rpn.label_columns(anchors, targets, torch.tensor([[7]]))[0, 0]
        assert labels[0] == 1 and labels[1] == 0
        # plus the one sampled negative, unless the sampler drew the class-3 anchor itself
        assert (labels[2:] == 0).sum() <= 1 and (labels[2:] == 1).sum() == 0


def test_attention_rpn_scores_every_column_and_merges():
    model = tiny_model().eval()
    rpn = model.proposal_generator
    k = rpn.kernel_size
    from torch.nn import functional as F

    from fewshot_det.modeling.fewshot import rms_normalize
    from fewshot_det.modeling.fewshot.attention_rpn import COLUMN_CHUNK

    num_cols = COLUMN_CHUNK + 4  # more columns than one chunk
    features = [torch.rand(2, 16, 5, 6)]
    protos = torch.rand(2, num_cols, 1, 16 * k * k)
    logits = rpn.class_logits(features, protos)[0]
    a = rpn.anchor_generator.num_anchors
    assert logits.shape == (2, num_cols * a, 5, 6)
    # the folded convolution equals the explicit per-channel correlation of the normalised
    # query patch with the normalised support kernel, then the scorer
    patches = rms_normalize(F.unfold(features[0][1:2], k, padding=k // 2)[0].T).T  # E, H*W
    for col in (2, num_cols - 1):
        q = rms_normalize(protos[1, col, 0]).view(16, k * k)
        corr = (patches.view(16, k * k, -1) * q[:, :, None]).sum(1).view(1, 16, 5, 6)
        torch.testing.assert_close(logits[1:2, col * a:(col + 1) * a], rpn.attention(corr),
                                   rtol=1e-4, atol=1e-5)


def test_support_kernels_come_from_the_natural_level():
    rpn = tiny_model().proposal_generator
    sizes = [s[0] for s in rpn.anchor_generator.sizes]
    boxes = torch.tensor([[0.0, 0.0, sizes[0], sizes[0]], [0.0, 0.0, sizes[-1], sizes[-1]]])
    assert rpn.natural_level(boxes).tolist() == [0, len(sizes) - 1]


def _episode_batch(ways=4):
    ids = list(range(1, ways + 1))
    return [
        {**query(boxes=[[10, 12, 60, 70], [50, 30, 120, 90]], labels=[1, 3]),
         "supports": supports(ids[::-1], shots=2)},
        {**query(seed=1, boxes=[[20, 20, 70, 80]], labels=[5], image_id=1),  # class 5 not in
         "supports": supports(ids, shots=2, seed=1)},                          # the episode
        {**query(seed=2, image_id=2), "supports": supports(ids, shots=2, seed=2)},  # no object
    ]


def test_four_way_training_step_reaches_every_parameter():
    model = tiny_model(num_classes=5).train()
    losses = model(_episode_batch(ways=4))
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_prior", "loss_rpn_loc", "loss_cls",
                           "loss_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    assert model.prototype_bank.count.tolist() == [1, 1, 1, 1, 0]


def test_images_without_episode_objects_have_zero_box_losses():
    model = tiny_model(num_classes=5).train()
    batch = _episode_batch()[1:]  # class 5 is not in the episode; the last image is empty
    losses = model(batch)
    assert losses["loss_box_reg"].item() == 0  # no RoI of an episode class
    assert losses["loss_cls"].item() > 0 and losses["loss_rpn_cls"].item() > 0
    # the class-5 object still teaches the class-agnostic RPN terms
    assert losses["loss_rpn_loc"].item() > 0
    only_empty = model(batch[1:])
    assert only_empty["loss_rpn_loc"].item() == 0 and only_empty["loss_box_reg"].item() == 0


def test_column_labels_of_sampled_rois():
    from fewshot_det.modeling.fewshot.siamese_heads import to_column_labels

    labels = torch.tensor([0, 4, 2, 7, 2, 0])
    cols = to_column_labels(labels, [4, 2], torch.tensor([[2, 4], [7, 2]]))
    assert cols.tolist() == [0, 2, 1, 0, 2, 0]


def test_training_without_supports_is_a_clear_error():
    model = tiny_model().train()
    with pytest.raises(ValueError, match="FEWSHOT.EPISODE.ENABLED"):
        model([query(boxes=[[1, 1, 20, 20]], labels=[1])])


def test_wrong_components_are_rejected():
    from fewshot_det.modeling import build_model

    cfg = tiny_cfg("MODEL.RPN.NAME", "RPN")
    with pytest.raises(ValueError, match="support-conditioned MODEL.RPN.NAME"):
        build_model(cfg)
    cfg = tiny_cfg("MODEL.ROI_BOX_HEAD.PREDICTOR", "FastRCNNOutputLayers")
    with pytest.raises(ValueError, match="PrototypeCosineOutputLayers"):
        build_model(cfg)


def test_frozen_detector_trains_only_the_conditioning():
    model = tiny_model("MODEL.SIAMESE.FREEZE_DETECTOR", "True", num_classes=5).train()
    assert not model.backbone.training and not model.roi_heads.box_head.training
    assert model.roi_heads.box_predictor.training
    bn = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    stats = bn.running_mean.clone()
    sum(model(_episode_batch()).values()).backward()
    trained = sorted({n.split(".")[0] + "." + n.split(".")[1]
                      for n, p in model.named_parameters() if p.grad is not None})
    assert trained == ["proposal_generator.attention", "roi_heads.box_predictor"]
    assert torch.equal(bn.running_mean, stats)  # batch norm in eval mode: not updated


def test_prototype_weights_score_a_class_without_a_row():
    """A class id beyond NUM_CLASSES (added at inference) is scored by g(prototype) alone;
    a class whose row is zero (after surgery) gets exactly the same weight."""
    model = tiny_model(num_classes=2).eval()
    predictor = model.roi_heads.box_predictor
    x, protos = torch.rand(6, 32), torch.rand(2, 32)
    logits, deltas = predictor(x, protos, torch.tensor([2, 3]), torch.tensor([True, True]))
    assert logits.shape == (6, 3) and deltas.shape == (6, 8)
    expected = 20 * torch.nn.functional.cosine_similarity(x, predictor.generator(protos[1])[None])
    torch.testing.assert_close(logits[:, 2], expected, rtol=1e-4, atol=1e-4)
    # class 2's row is zero at initialisation: same prototype, same logit
    same, _ = predictor(x, protos[[1, 1]], torch.tensor([2, 3]), torch.tensor([True, True]))
    torch.testing.assert_close(same[:, 1], same[:, 2])
    # with a zero row the weight is the unit-length g(prototype): a residual row learned in
    # fine-tuning moves it on that scale
    w = predictor.class_weights(protos, torch.tensor([2, 3]))
    torch.testing.assert_close(w.norm(dim=1), torch.ones(2))
    # deltas of the unknown class are the mean of the class rows
    rows = predictor.bbox_pred(x).view(6, 2, 4)
    torch.testing.assert_close(deltas[:, 4:], rows.mean(dim=1))
    torch.testing.assert_close(deltas[:, :4], rows[:, 1])


def test_invalid_columns_get_no_score():
    model = tiny_model().eval()
    predictor = model.roi_heads.box_predictor
    x = torch.rand(5, 32)
    logits, deltas = predictor(x, torch.rand(3, 32), torch.tensor([1, 2, 3]),
                               torch.tensor([True, False, True]))
    assert logits.shape == (5, 4) and deltas.shape == (5, 12)
    assert torch.isinf(logits[:, 2]).all() and torch.isfinite(logits[:, [0, 1, 3]]).all()


def test_bank_columns_extend_every_episode_to_all_known_classes():
    from fewshot_det.modeling.fewshot import PrototypeBank, Prototypes
    from fewshot_det.modeling.meta_arch.siamese_rcnn import with_bank_columns

    bank = PrototypeBank(num_classes=5, num_levels=1, channels=2, head_dim=3)
    bank.assign(torch.tensor([1, 2, 4]), torch.ones(3, 1, 2), torch.arange(9.0).view(3, 3))
    ids = torch.tensor([[4, 1], [2, 4]])
    p = Prototypes(rpn=torch.zeros(2, 2, 1, 2, requires_grad=True), head=torch.zeros(2, 2, 3),
                   class_ids=ids, valid=torch.ones(2, 2, dtype=torch.bool))
    out = with_bank_columns(p, bank)
    assert out.class_ids.tolist() == [[4, 1, 2], [2, 4, 1]]
    assert out.head[0, 2].tolist() == [3.0, 4.0, 5.0] and out.head[1, 2].tolist() == [0, 1, 2]
    assert out.rpn.requires_grad and out.valid.all()


def test_bank_training_prototypes_score_every_known_class_from_the_bank():
    model = tiny_model("MODEL.SIAMESE.TRAIN_PROTOTYPES", "bank", num_classes=5).train()
    s = supports([5], shots=1, seed=3)
    model.set_supports(s["images"], s["boxes"], s["labels"])  # class 5 known beforehand
    seen = {}
    original = model.roi_heads.predict

    def spy(x, proposals, prototypes):
        seen["ids"], seen["head"] = prototypes.class_ids, prototypes.head
        return original(x, proposals, prototypes)

    model.roi_heads.predict = spy
    losses = model(_episode_batch(ways=4))
    assert torch.isfinite(sum(losses.values()))
    assert seen["ids"].tolist() == [[1, 2, 3, 4, 5]] * 3  # all known classes, every image
    torch.testing.assert_close(seen["head"][0], model.prototype_bank.head)  # bank rows
    with pytest.raises(ValueError, match="TRAIN_PROTOTYPES"):
        tiny_model("MODEL.SIAMESE.TRAIN_PROTOTYPES", "mean")

