"""A Gradio demo of any family checkpoint: upload or pick an image, read its labels, scores and heatmaps.

    from transformers_hsvlt.demo import build_demo, launch
    launch("hsvlt-digits", port=7860)          # or: hsvlt-demo hsvlt-digits --port 7860

The page shows every label's score, a threshold slider choosing the predicted labels, and the prediction figure
(`transformers_hsvlt.visualization.figures`) with each predicted label's heatmap (`label_heatmaps`, the default
method and stage). The example images are the checkpoint's `examples/` folder, if it has one. For open-vocabulary
checkpoints (models with `set_class_names`), a text box sets the label names. Needs gradio and matplotlib
(`pip install -e ".[demo]"`).
"""

import importlib.util
from pathlib import Path

import PIL.Image
import torch

from .checkpoints import is_open_vocabulary, load_checkpoint
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


def _label_scores(model, processor, image: PIL.Image.Image, threshold: float):
    """Every label's score, and the prediction (labels above `threshold`) with their heatmaps (none for an
    architecture without feature maps)."""
    (prediction,) = predict(model, processor, [image], ["image"], threshold=None)
    scores = {label["label"]: label["score"] for label in prediction.labels}
    prediction.labels = [label for label in prediction.labels if label["score"] >= threshold]
    pixel_values = processor(images=[image], return_tensors="pt")["pixel_values"].to(model.device, model.dtype)
    add_label_heatmaps(model, pixel_values, [prediction], method=DEFAULT_METHOD, stage=DEFAULT_STAGE)
    return scores, prediction


def _parse_class_names(text: str) -> list[str]:
    names = [name.strip() for name in text.replace("\n", ",").split(",") if name.strip()]
    if not names:
        raise ValueError("label names: give at least one name, separated by commas.")
    return names


def _summary(prediction, threshold: float) -> str:
    if not prediction.labels:
        return f"No label scores {threshold:.2f} or more."
    names = ", ".join(f"**{label['label']}** ({label['score']:.2f})" for label in prediction.labels)
    return f"Predicted (score >= {threshold:.2f}): {names}"


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

    def run(image, threshold, class_names=None):
        if image is None:
            return None, None, "Upload an image or pick an example."
        if open_vocabulary:
            try:
                model.set_class_names(_parse_class_names(class_names or ""), model.class_name_tokenizer)
            except ValueError as error:
                raise gr.Error(str(error)) from None
        scores, prediction = _label_scores(model, processor, image.convert("RGB"), threshold)
        figure = figure_to_image(prediction_figure(image, prediction))
        return scores, figure, _summary(prediction, threshold)

    title = f"{model.config.model_type.upper()} multi-label classifier"
    with gr.Blocks(title=title) as demo:
        gr.Markdown(
            f"# {title}\n`{model_name_or_path}`: {num_labels} labels. Upload an image or pick an example; every "
            "label gets an independent probability, and each label at or above the threshold is shown with the "
            f"heatmap of its evidence ({METHOD_NAMES[DEFAULT_METHOD]}, stage {DEFAULT_STAGE})."
        )
        with gr.Row():
            with gr.Column(scale=1):
                image = gr.Image(
                    type="pil", label="Image", sources=["upload", "clipboard"], height=320, elem_id="input-image"
                )
                threshold = gr.Slider(0.0, 1.0, value=0.5, step=0.01, label="Threshold")
                inputs = [image, threshold]
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
    return demo


def launch(model: str, port: int | None = None, host: str | None = None, **launch_options):
    """Build the demo of `model` and serve it on `host:port` (gradio's defaults: 127.0.0.1, port 7860 or the
    `GRADIO_SERVER_NAME` / `GRADIO_SERVER_PORT` environment variables); returns the demo."""
    demo = build_demo(model)
    demo.launch(server_name=host, server_port=port, css=DEMO_CSS, **launch_options)
    return demo
