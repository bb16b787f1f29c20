"""Few-shot parts: support prototypes, the support-conditioned box head and class-count
surgery (each meta-architecture names its class-shaped tensors in ``class_rows``).

The meta-architecture that assembles them is ``meta_arch.siamese_rcnn.SiameseRCNN``;
importing this package registers ``SiameseROIHeads`` (MODEL.ROI_HEADS.NAME) and
``PrototypeCosineOutputLayers`` (MODEL.ROI_BOX_HEAD.PREDICTOR).
"""
from .prototypes import PrototypeBank, Prototypes, average_shots
from .siamese_heads import SiameseROIHeads, PrototypeCosineOutputLayers
from .surgery import (ClassRows, SurgeryReport, class_surgery, meta_arch_class_rows,
                      remap_class_rows, source_rows)

__all__ = ["PrototypeBank", "Prototypes", "average_shots",
           "SiameseROIHeads", "PrototypeCosineOutputLayers", "ClassRows", "SurgeryReport",
           "class_surgery", "meta_arch_class_rows", "remap_class_rows", "source_rows"]
