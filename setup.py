from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="mlic-pipe",
    version="0.1.0",
    description="GPU data pipeline for multi-label image classification: DALI decode, one fused Triton "
                "SpliceMix kernel, zero-copy into PyTorch",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["mlic_pipe", "mlic_pipe.*"]) + ["mlic_pipe.kernels"],
    package_dir={"mlic_pipe.kernels": "kernels"},
    install_requires=[
        "torch>=2.4",
        "torchvision",
        "timm>=1.0",
        "triton",
        "nvidia-dali-cuda130",
        "numpy>=1.24",
        "pycocotools>=2.0.7",
        "pillow>=10",
        "tqdm",
        "numba>=0.59",  # the compiled CPU render (mlic_pipe.mix.cpu_render); ships its own LLVM
        "scikit-image>=0.22",
    ],
    extras_require={"test": ["pytest>=7", "pytest-benchmark>=4", "scikit-learn>=1.3", "lightning>=2.2",
                             "opencv-contrib-python-headless>=4.8",  # the reference for SaliencyMix's saliency
                             "matplotlib>=3.7",  # the charts, tested
                             "webdataset>=0.2",  # the reference reader/writer our shards' and others' tars are tested with
                             "datasets>=2.14"],  # Hugging Face datasets, built locally in the tests
                    # `load_hf` / `load(save_to_disk folder)`: Hugging Face datasets as a source
                    "hf": ["datasets>=2.14"],
                    # the benchmark suite's optional contender (its groups skip it without)
                    "bench": ["pytest>=7", "pytest-benchmark>=4", "kornia>=0.7", "matplotlib>=3.7"],
                    # `mlic-pipe study`'s and `python -m benchmarks.report`'s charts
                    "charts": ["matplotlib>=3.7"]},
    entry_points={"console_scripts": ["mlic-pipe=mlic_pipe.cli:main"]},
)
