"""A Gradio demo of any family checkpoint: upload or pick an image, read its labels, scores and heatmaps.

    from transformers_hsvlt.demo import build_demo, launch
    launch("hsvlt-digits", port=7860)          # or: hsvlt-demo hsvlt-digits --port 7860

The page shows every label's score, a slider shifting every label's threshold (the checkpoint's calibrated
thresholds, see `hsvlt-calibrate`, else 0.5; a toggle shows the raw 0.5 rule instead), and the prediction figure
(`transformers_hsvlt.visualization.figures`) with the heatmaps of the `MAX_HEATMAPS` best predicted labels
(`label_heatmaps`, the default method and stage). Uploads are read as `hsvlt-predict` reads images
(`transformers_hsvlt.images.load_image`: the same conversion of every mode, the same pixel limit, large images
reduced while decoding), and are at most `MAX_UPLOAD_BYTES`. The example images are the checkpoint's `examples/`
folder, if it has one. For open-vocabulary
checkpoints (models with `set_class_names`), a text box sets the label names. Needs gradio and matplotlib
(`pip install -e ".[demo]"`).
"""

import importlib.util
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from .checkpoints import is_open_vocabulary, load_checkpoint
from .image_processing_multilabel import DEFAULT_THRESHOLD, calibrated_thresholds, decision_thresholds
from .images import ImageLoadError, load_image
from .inference import predict
from .registry import get_architecture
from .visualization.figures import figure_to_image, prediction_figure
from .visualization.gradcam import DEFAULT_METHOD, DEFAULT_STAGE, METHOD_NAMES, add_label_heatmaps


__all__ = ["DEMO_CSS", "build_demo", "example_images", "launch"]

DEMO_CSS = "#input-image img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }"
"""The page's style (`launch(css=DEMO_CSS)`): the input image fills its box, so a 64x64 canvas shows at the box's
size, pixels kept sharp, instead of 64 pixels wide."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MAX_EXAMPLES = 12

#: Largest file the page accepts (gradio's `max_file_size`); the pixels are capped by `load_image`.
MAX_UPLOAD_BYTES = 50 * 2**20

#: Predicted labels drawn with a heatmap, best first (one gradient pass and one panel each: a low threshold on
#: thousands of labels must not make thousands).
MAX_HEATMAPS = 8


def _check_gradio() -> None:
    """A one-line ImportError naming the install command when gradio is missing (checked before the model loads,
    imported after)."""
    if importlib.util.find_spec("gradio") is None:
        raise ImportError('The demo needs gradio: pip install -e ".[demo]" (or pip install gradio matplotlib).')


def example_images(name_or_path: str) -> list[str]:
    """The image files of the checkpoint's `examples/` folder (a local directory, or a Hub repository's files
    already cached or downloadable), sorted, at most `MAX_EXAMPLES`; none if it has no such folder."""
    folder = Path(name_or_path) / "examples"
    if not Path(name_or_path).is_dir():
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(name_or_path, allow_patterns=["examples/*"])) / "examples"
        except Exception:  # offline, private or no such repository: the demo works without examples
            return []
    if not folder.is_dir():
        return []
    files = sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
    return [str(path) for path in files[:MAX_EXAMPLES]]


def label_thresholds(names: list[str], calibrated: dict[str, float], shift: float, raw: bool) -> np.ndarray:
    """The threshold of each label of `names` in the demo: its `calibrated` one by name (0.5 without one, or for the
    `raw` 0.5 rule) plus `shift`, kept in [0, 1]."""
    base = decision_thresholds(DEFAULT_THRESHOLD if raw else "auto", names, calibrated)
    return np.clip(base + shift, 0.0, 1.0)


def _label_scores(model, processor, image: PIL.Image.Image, thresholds: np.ndarray):
    """Every label's score, the prediction (labels at or above their `thresholds`, best first) and the number of
    them; the prediction keeps the best `MAX_HEATMAPS` labels, with their heatmaps (none for an architecture without
    feature maps)."""
    (prediction,) = predict(model, processor, [image], ["image"], threshold=None)
    scores = {label["label"]: label["score"] for label in prediction.labels}
    predicted = [label for label in prediction.labels if label["score"] >= thresholds[label["index"]]]
    prediction.labels = predicted[:MAX_HEATMAPS]
    pixel_values = processor(images=[image], return_tensors="pt")["pixel_values"].to(model.device, model.dtype)
    add_label_heatmaps(model, pixel_values, [prediction], method=DEFAULT_METHOD, stage=DEFAULT_STAGE)
    return scores, prediction, len(predicted)


def _parse_class_names(text: str) -> list[str]:
    names = [name.strip() for name in text.replace("\n", ",").split(",") if name.strip()]
    if not names:
        raise ValueError("label names: give at least one name, separated by commas.")
    return names


def _summary(prediction, num_predicted: int, thresholds: np.ndarray) -> str:
    rule = f"{thresholds[0]:.2f}" if np.all(thresholds == thresholds[0]) else "its label's threshold"
    if not prediction.labels:
        return f"No label scores {rule} or more."
    names = ", ".join(f"**{label['label']}** ({label['score']:.2f})" for label in prediction.labels)
    more = num_predicted - len(prediction.labels)
    return f"Predicted (score >= {rule}): {names}" + (f" and {more} more" if more else "")


def build_demo(model_name_or_path: str, device: str | torch.device | None = None):
    """
    The Gradio app (`gradio.Blocks`, not launched) of a checkpoint (a directory or Hub id), loaded with
    `transformers_hsvlt.checkpoints.load_checkpoint` on `device` (default: cuda if available).
    """
    _check_gradio()
    model, processor = load_checkpoint(model_name_or_path, device)
    import gradio as gr

    open_vocabulary = is_open_vocabulary(get_architecture(model.config.model_type))
    num_labels = model.config.num_labels
    examples = example_images(model_name_or_path)
    calibrated = calibrated_thresholds(model.config)  # of the trained labels; open-vocabulary names may change
    base_rule = "each label's calibrated threshold" if calibrated else "0.5"

    def run(image_path, shift, raw=False, class_names=None):
        if image_path is None:
            return None, None, "Upload an image or pick an example."
        try:
            if open_vocabulary:
                model.set_class_names(_parse_class_names(class_names or ""), model.class_name_tokenizer)
            image = load_image(image_path)
        except (ImageLoadError, ValueError) as error:
            raise gr.Error(str(error)) from None
        names = [model.config.id2label[index] for index in range(model.config.num_labels)]
        thresholds = label_thresholds(names, calibrated, shift, raw)
        scores, prediction, num_predicted = _label_scores(model, processor, image, thresholds)
        figure = figure_to_image(prediction_figure(image, prediction))
        return scores, figure, _summary(prediction, num_predicted, thresholds)

    title = f"{model.config.model_type.upper()} multi-label classifier"
    with gr.Blocks(title=title) as demo:
        gr.Markdown(
            f"# {title}\n`{model_name_or_path}`: {num_labels} labels. Upload an image or pick an example; every "
            "label gets an independent probability, and each label at or above its threshold is shown with the "
            f"heatmap of its evidence ({METHOD_NAMES[DEFAULT_METHOD]}, stage {DEFAULT_STAGE})."
        )
        with gr.Row():
            with gr.Column(scale=1):
                # a file path, read by `load_image` (gradio would convert a PIL image to RGB its own way)
                image = gr.Image(
                    type="filepath",
                    image_mode=None,
                    label="Image",
                    sources=["upload", "clipboard"],
                    height=320,
                    elem_id="input-image",
                )
                threshold = gr.Slider(-0.5, 0.5, value=0.0, step=0.01, label=f"Threshold shift (from {base_rule})")
                raw_rule = gr.Checkbox(False, label="Raw 0.5 rule", visible=bool(calibrated))
                inputs = [image, threshold, raw_rule]
                if open_vocabulary:
                    names = ", ".join(model.config.id2label[index] for index in range(num_labels))
                    inputs.append(gr.Textbox(value=names, label="Label names (comma-separated)", lines=2))
                button = gr.Button("Predict", variant="primary")
                if examples:
                    gr.Examples(examples=[[path] for path in examples], inputs=[image], label="Examples")
            with gr.Column(scale=2):
                summary = gr.Markdown()
                scores = gr.Label(label="Scores", num_top_classes=min(num_labels, 10))
                figure = gr.Image(type="pil", label="Heatmaps", format="png", interactive=False)
        outputs = [scores, figure, summary]
        button.click(run, inputs, outputs)
        image.change(run, inputs, outputs)
        threshold.release(run, inputs, outputs)
        raw_rule.change(run, inputs, outputs)
    return demo


def launch(model: str, port: int | None = None, host: str | None = None, **launch_options):
    """Build the demo of `model` and serve it on `host:port` (gradio's defaults: 127.0.0.1, port 7860 or the
    `GRADIO_SERVER_NAME` / `GRADIO_SERVER_PORT` environment variables), accepting files up to `MAX_UPLOAD_BYTES`
    unless `max_file_size` is given; returns the demo."""
    demo = build_demo(model)
    demo.launch(
        server_name=host, server_port=port, css=DEMO_CSS, **{"max_file_size": MAX_UPLOAD_BYTES, **launch_options}
    )
    return demo
