"""The registries of fewshot_det's extension points (fvcore ``Registry``).

A new component registers itself and is then chosen by name in the config:

    @PROPOSAL_GENERATOR_REGISTRY.register()
    class MyRPN(nn.Module):
        @classmethod
        def from_config(cls, cfg, input_shape): ...

What each registry holds, and the config key that picks from it:

- ``META_ARCH_REGISTRY``: classes with ``from_config(cfg)``; ``MODEL.META_ARCHITECTURE``.
- ``BACKBONE_REGISTRY``: functions ``fn(cfg) -> Backbone``; ``MODEL.BACKBONE.NAME``.
- ``PROPOSAL_GENERATOR_REGISTRY``: classes with ``from_config(cfg, input_shape)``
  (input_shape: backbone.output_shape()); ``MODEL.RPN.NAME``.
- ``ROI_HEADS_REGISTRY``: classes with ``from_config(cfg, input_shape)``;
  ``MODEL.ROI_HEADS.NAME``.
- ``ROI_BOX_PREDICTOR_REGISTRY``: classes with ``from_config(cfg, input_dim)``;
  ``MODEL.ROI_BOX_HEAD.PREDICTOR``.
"""
from fvcore.common.registry import Registry

META_ARCH_REGISTRY = Registry("META_ARCH")
BACKBONE_REGISTRY = Registry("BACKBONE")
PROPOSAL_GENERATOR_REGISTRY = Registry("PROPOSAL_GENERATOR")
ROI_HEADS_REGISTRY = Registry("ROI_HEADS")
ROI_BOX_PREDICTOR_REGISTRY = Registry("ROI_BOX_PREDICTOR")


def lookup(registry: Registry, name: str, key: str):
    """``registry.get(name)``, with an error naming the config ``key`` and the choices."""
    if name not in registry:
        choices = sorted(n for n, _ in registry)
        raise ValueError(f"{key} = {name!r} is not registered in {registry._name}; "
                         f"choose one of {choices}")
    return registry.get(name)
