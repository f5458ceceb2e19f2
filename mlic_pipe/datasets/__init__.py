"""Annotation readers: COCO, Pascal VOC, NUS-WIDE, Open Images, CSV, list files, Hugging Face datasets, WebDataset tars, demo data -> `LabelIndex`."""
from mlic_pipe.datasets.coco import load_coco
from mlic_pipe.datasets.csv import load_csv
from mlic_pipe.datasets.encoded import EncodedIndex
from mlic_pipe.datasets.hf import load_hf, load_hf_disk
from mlic_pipe.datasets.demo import DEMO_CLASSES, build_demo, ensure_demo, load_demo
from mlic_pipe.datasets.detect import detect_format, load
from mlic_pipe.datasets.index import LabelIndex
from mlic_pipe.datasets.listfile import load_list
from mlic_pipe.datasets.labels import SparseLabels
from mlic_pipe.datasets.nuswide import load_nuswide
from mlic_pipe.datasets.openimages import load_openimages
from mlic_pipe.datasets.voc import VOC_CLASSES, load_voc
from mlic_pipe.datasets.wds import load_webdataset
from mlic_pipe.errors import MLICDataError

__all__ = [
    "DEMO_CLASSES", "EncodedIndex", "LabelIndex", "MLICDataError", "VOC_CLASSES", "build_demo", "detect_format",
    "ensure_demo", "load", "load_coco", "load_csv", "load_demo", "load_hf", "load_hf_disk", "load_list", "load_nuswide",
    "load_openimages", "load_voc", "load_webdataset", "SparseLabels",
]
