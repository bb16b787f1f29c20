"""Few-shot parts: support prototypes, the support-conditioned RPNs and box head,
class-count surgery and proposal recall.

The meta-architecture that assembles them is ``meta_arch.siamese_rcnn.SiameseRCNN``;
importing this package registers ``AttentionRPN`` and ``SupportMatchingRPN``
(MODEL.RPN.NAME), ``SiameseROIHeads`` (MODEL.ROI_HEADS.NAME) and
``PrototypeCosineOutputLayers`` (MODEL.ROI_BOX_HEAD.PREDICTOR).
"""
from .attention_rpn import AttentionRPN, rms_normalize
from .matching_rpn import SupportMatchingRPN, box_vectors
from .prototypes import PrototypeBank, Prototypes, average_shots
from .recall import model_proposals, proposal_limits, proposal_recall, recall_at
from .siamese_heads import SiameseROIHeads, PrototypeCosineOutputLayers
from .surgery import (SURGERY_REGISTRY, ClassRows, SurgeryReport, class_surgery,
                      register_surgery, remap_class_rows, source_rows)

__all__ = ["AttentionRPN", "rms_normalize", "SupportMatchingRPN", "box_vectors",
           "PrototypeBank", "Prototypes", "average_shots",
           "model_proposals", "proposal_limits", "proposal_recall", "recall_at",
           "SiameseROIHeads", "PrototypeCosineOutputLayers", "SURGERY_REGISTRY", "ClassRows",
           "SurgeryReport", "class_surgery", "register_surgery", "remap_class_rows",
           "source_rows"]
