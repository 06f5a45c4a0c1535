"""The Gradio demo: built from a tiny saved checkpoint, served on localhost and used in a real (headless) browser.

The browser test needs the system chromium (`apt-get install chromium`) and the `playwright` package (no
`playwright install`: the system browser is launched). It saves a screenshot to tests/artifacts/demo.png.
"""

import os
import shutil
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config
from PIL import Image

from transformers_hsvlt import HSVLTForMultiLabelClassification, MultiLabelImageProcessor
from transformers_hsvlt.cli.demo import main as demo_main


os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny HSVLT with its image processor and two example images, saved like `hsvlt-train` saves one."""
    directory = tmp_path_factory.mktemp("tiny-checkpoint")
    HSVLTForMultiLabelClassification(tiny_config()).save_pretrained(directory)
    MultiLabelImageProcessor(size={"height": 64, "width": 64}).save_pretrained(directory)
    (directory / "examples").mkdir()
    rng = np.random.default_rng(0)
    for index in range(2):
        pixels = rng.integers(0, 255, size=(48, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(directory / "examples" / f"example_{index}.png")
    return directory


def test_examples_are_the_checkpoints_example_folder(checkpoint, tmp_path):
    from transformers_hsvlt.demo import example_images

    assert [Path(path).name for path in example_images(str(checkpoint))] == ["example_0.png", "example_1.png"]
    assert example_images(str(tmp_path)) == []


def test_open_vocabulary_label_names_are_parsed():
    from transformers_hsvlt.demo import _parse_class_names

    assert _parse_class_names("cat, dog\n traffic light,,") == ["cat", "dog", "traffic light"]
    with pytest.raises(ValueError, match="label names"):
        _parse_class_names(" , ")


def test_missing_gradio_names_the_install_command(checkpoint, monkeypatch, capsys):
    from transformers_hsvlt.demo import build_demo

    monkeypatch.setitem(sys.modules, "gradio", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[demo\]"'):
        build_demo(str(checkpoint))
    assert demo_main([str(checkpoint)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_cli_usage_errors_exit_2_with_one_line(tmp_path, capsys):
    assert demo_main([str(tmp_path / "missing"), "--port", "80000"]) == 2
    assert "--port" in capsys.readouterr().err
    assert demo_main([str(tmp_path)]) == 2  # not a checkpoint
    error = capsys.readouterr().err
    assert error.startswith("hsvlt-demo: error:") and error.count("\n") == 1
    with pytest.raises(SystemExit) as exit_info:
        demo_main([])
    assert exit_info.value.code == 2


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _playwright():
    """playwright's sync API and the system chromium, or a skip naming what is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the browser test needs the playwright package (pip install playwright)")
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("the browser test needs a system chromium (apt-get install chromium)")
    return sync_playwright, executable


@pytest.mark.slow
def test_demo_in_a_browser(checkpoint):
    pytest.importorskip("gradio", reason="the demo needs gradio (pip install -e '.[demo]')")
    sync_playwright, executable = _playwright()
    from transformers_hsvlt.demo import DEMO_CSS, build_demo

    demo = build_demo(str(checkpoint), device="cpu")
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, css=DEMO_CSS)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
            page.get_by_text("Threshold").first.wait_for(timeout=30_000)
            page.locator("input[type=file]").first.set_input_files(str(checkpoint / "examples" / "example_0.png"))
            # every label's score is listed, and the heatmap figure arrives as an image
            for name in ("cat", "dog", "person", "car", "tree"):
                page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
            page.get_by_text("Predicted (score >=").or_(page.get_by_text("No label scores")).first.wait_for()
            figure = page.locator("img[alt='Heatmaps'], [data-testid='image'] img, .image-container img").last
            figure.wait_for(timeout=60_000)
            box = figure.bounding_box()
            assert box is not None and box["width"] > 200 and box["height"] > 100
            uploaded = page.locator("#input-image img").first.bounding_box()  # the 48x48 example, at a visible size
            assert uploaded is not None and min(uploaded["width"], uploaded["height"]) >= 200, uploaded
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "demo.png"), full_page=True)
            browser.close()
    finally:
        demo.close()
    screenshot = np.asarray(Image.open(ARTIFACTS / "demo.png").convert("L"), dtype=np.float64)
    assert screenshot.shape[1] >= 1000 and screenshot.std() > 10
