from pathlib import Path

from setuptools import find_packages, setup


setup(
    name="transformers-hsvlt",
    version="0.1.0",
    description="HSVLT (Hierarchical Scale-Aware Vision-Language Transformer) and its sibling multi-label image "
    "classifiers (MSRN, PatchCT, PVLR) as Hugging Face transformers models.",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    package_dir={"": "src"},
    packages=find_packages("src"),
    include_package_data=True,
    package_data={"transformers_hsvlt": ["evaluation/metric/*.py", "evaluation/metric/*.md"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4",
        "transformers>=5.23,<6",
        "datasets>=3.0",
        "evaluate>=0.4.3",
        "accelerate>=1.0",
        "kornia>=0.7",
        "huggingface_hub>=1.0",
        "safetensors>=0.4",
        "numpy>=1.24",
        "pillow>=10.0",
        "scikit-learn>=1.3",
        "tqdm>=4.60",
    ],
    extras_require={
        "onnx": ["onnx>=1.16", "onnxruntime>=1.18", "onnxscript>=0.1"],
        "demo": ["matplotlib>=3.7", "gradio>=4.0"],
        "tests": [
            "pytest>=7.4",
            "scikit-image>=0.22",
            "onnx>=1.16",
            "onnxruntime>=1.18",
            "onnxscript>=0.1",
            "matplotlib>=3.7",
            "gradio>=4.0",
            "playwright>=1.40",
            "ruff",
        ],
    },
    entry_points={
        "console_scripts": [
            "hsvlt-train=transformers_hsvlt.cli.train:main",
            "hsvlt-eval=transformers_hsvlt.cli.evaluate:main",
            "hsvlt-predict=transformers_hsvlt.cli.predict:main",
            "hsvlt-embed-labels=transformers_hsvlt.cli.embed_labels:main",
            "hsvlt-convert=transformers_hsvlt.cli.convert:main",
            "hsvlt-demo=transformers_hsvlt.cli.demo:main",
            "hsvlt-calibrate=transformers_hsvlt.cli.calibrate:main",
        ]
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: Apache Software License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
