"""Models: a timm backbone giving a feature map, plus the multi-label heads of the seed papers."""
from mlic_pipe.models.backbone import TimmBackbone, create_timm_model
from mlic_pipe.models.build import HEADS, MLICModel, build_head, build_model, uncertainty_vectors
from mlic_pipe.models.csra import CSRA, CSRA_TEMPERATURES
from mlic_pipe.models.graph import GraphReweight, cooccurrence_adjacency
from mlic_pipe.models.ml_decoder import MLDecoder
from mlic_pipe.models.pooling import PoolHead

__all__ = ["CSRA", "CSRA_TEMPERATURES", "GraphReweight", "HEADS", "MLDecoder", "MLICModel", "PoolHead",
           "TimmBackbone", "build_head", "build_model", "cooccurrence_adjacency", "create_timm_model",
           "uncertainty_vectors"]
