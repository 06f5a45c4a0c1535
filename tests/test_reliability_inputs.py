"""Issue 19, "nothing lost, round three", the input side: the demo, URLs, decompression-sized images, hostile
checkpoints and one-line errors of `hsvlt-predict`, `hsvlt-eval` and `hsvlt-demo`, each through the real command
(`main(argv)`, a launched demo answering a real HTTP request, or a subprocess where memory is measured).

The tiny checkpoint and the command runners are those of tests/test_reliability_commands.py.
"""

import importlib.util
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO

import numpy as np
import pytest
import test_reliability_commands as commands
from conftest import CTRL_C_RETURN_CODES, restore_default_sigint
from PIL import Image

from transformers_hsvlt.cli.demo import main as demo_main
from transformers_hsvlt.images import DEFAULT_MAX_SIDE, ImageLoadError, load_image


os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

# the fixtures and runners of tests/test_reliability_commands.py
workdir, checkpoint, images = commands.workdir, commands.checkpoint, commands.images
pytestmark = pytest.mark.usefixtures("one_thread")
run, refused = commands.run, commands.refused

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---- 8. the demo reads every image mode as hsvlt-predict does ------------------------------------------------------


def _images_of_every_mode(directory) -> dict:
    """One file per PIL mode a user may upload: transparency, 16-bit, palette, bilevel, CMYK."""
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (40, 48, 4), dtype=np.uint8)
    rgba[..., 3] = np.where(rng.random((40, 48)) < 0.5, 0, rgba[..., 3])  # half the pixels fully transparent
    palette = Image.fromarray(rgba[..., :3]).quantize(32)
    palette.info["transparency"] = 0
    gray16 = (rng.random((40, 48)) * 65535).astype(np.uint16)
    files = {
        "RGBA": (Image.fromarray(rgba, "RGBA"), "png"),
        "LA": (Image.fromarray(rgba[..., [0, 3]], "LA"), "png"),
        "I;16": (Image.fromarray(gray16), "png"),
        "P-transparent": (palette, "png"),
        "1": (Image.fromarray(rgba[..., 0] > 127), "png"),
        "CMYK": (Image.fromarray(rgba, "RGBA").convert("CMYK"), "jpeg"),
        "RGB": (Image.fromarray(rgba[..., :3]), "png"),
    }
    paths = {}
    for mode, (image, extension) in files.items():
        path = directory / f"mode-{mode.replace(';', '')}.{extension}"
        image.save(path)
        paths[mode] = path
    return paths


@pytest.fixture(scope="module")
def demo_url(checkpoint):
    """The demo of the tiny checkpoint, launched on localhost as `hsvlt-demo` launches it."""
    pytest.importorskip("gradio", reason="the demo needs gradio (pip install -e '.[demo]')")
    from transformers_hsvlt.demo import MAX_UPLOAD_BYTES, build_demo

    demo = build_demo(str(checkpoint), device="cpu")
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                max_file_size=MAX_UPLOAD_BYTES)  # fmt: skip
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def _demo_scores(url: str, path) -> dict:
    """Every label's score as the demo page shows it for an uploaded file (a real HTTP upload and request)."""
    from gradio_client import Client, handle_file

    scores, _, _ = Client(url, verbose=False).predict(handle_file(str(path)), 0.0, False, api_name="/run")
    return {entry["label"]: entry["confidence"] for entry in scores["confidences"]}


@pytest.mark.slow
def test_demo_reads_every_image_mode_as_predict_does(checkpoint, demo_url, tmp_path, capsys):
    paths = _images_of_every_mode(tmp_path)
    code, out, err = run("hsvlt-predict", [checkpoint, *paths.values(), "--json", "--threshold", "0"], capsys)
    assert code == 0, err
    predicted = {entry["image"]: entry["predictions"] for entry in json.loads(out)}
    for mode, path in paths.items():
        expected = {label["label"]: label["score"] for label in predicted[str(path)]}
        shown = _demo_scores(demo_url, path)
        assert shown.keys() == expected.keys(), mode
        differences = [abs(shown[name] - expected[name]) for name in expected]
        assert max(differences) < 1e-5, f"{mode}: the demo's scores differ from hsvlt-predict's by {max(differences)}"


# ---- 9. a URL's time limit covers the headers too --------------------------------------------------------------------


class _SlowHeaders(BaseHTTPRequestHandler):
    """Sends its status line, then one byte of a header every 0.25 s, at most `TOTAL` bytes (it stops by itself);
    `sent` records how many the last client took before hanging up."""

    TOTAL = 60
    sent = 0

    def do_GET(self):  # noqa: N802 (http.server's name)
        type(self).sent = 0
        try:
            self.wfile.write(b"HTTP/1.0 200 OK\r\nX-Slow: ")
            for _ in range(self.TOTAL):
                self.wfile.write(b"x")
                self.wfile.flush()
                type(self).sent += 1
                time.sleep(0.25)
            self.wfile.write(b"\r\n\r\n")
        except OSError:  # the client gave up
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def slow_headers_url():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _SlowHeaders)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/slow.png"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.mark.slow
def test_download_limit_covers_slow_headers(checkpoint, images, slow_headers_url, capsys):
    code, out, err = run("hsvlt-predict", [checkpoint, slow_headers_url, images[0], "--download_seconds", "1"], capsys)
    assert code == 1 and str(images[0]) in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and slow_headers_url in lines[0] and "took more than 1 s" in lines[0], err
    time.sleep(0.6)  # the server notices the closed connection at its next byte or the one after
    assert _SlowHeaders.sent < _SlowHeaders.TOTAL // 2, "the client read the slow headers to their end"


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1"])
def test_download_seconds_must_be_a_positive_number(value, checkpoint, images, capsys):
    refused("hsvlt-predict", [checkpoint, images[0], "--download_seconds", value], capsys, "--download_seconds", value)
    with pytest.raises(ValueError, match="download_seconds"):
        load_image("http://127.0.0.1:9/image.png", download_seconds=float(value))


# ---- 10. decompression-sized images: reduced while decoding, memory bounded -----------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _write_png(path, side: int):
    """A side x side RGB PNG of a few hundred KB, written row by row (never whole in memory): a gradient, so that it
    is not all one colour."""
    compressor = zlib.compressobj(9)
    compressed = []
    for row in range(side):
        value = row * 255 // side
        compressed.append(compressor.compress(b"\0" + bytes([value, 255 - value, 128]) * side))
    compressed.append(compressor.flush())
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    chunks = [(b"IHDR", header), (b"IDAT", b"".join(compressed)), (b"IEND", b"")]
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"".join(_png_chunk(kind, data) for kind, data in chunks))
    return path


@pytest.fixture(scope="module")
def huge_png(workdir):
    """11000 x 11000 pixels (121 million; 484 MiB decoded) in a small file: the issue's upload."""
    return _write_png(workdir / "huge.png", 11000)


@pytest.fixture(scope="module")
def largest_png(workdir):
    """8000 x 8000 pixels: the largest PNG decoded by default (`DEFAULT_MAX_IMAGE_PIXELS`)."""
    return _write_png(workdir / "largest.png", 8000)


#: The end of the measured scripts: the peak resident memory (kB) of this process's own memory (`VmHWM`; `ru_maxrss`
#: would count the parent's memory too, inherited through the spawn).
PRINT_PEAK = 'print("PEAK", next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")))'


def _peak_rss_mib(script: str, *arguments) -> tuple[float, str, str]:
    """Run `script` in a fresh Python with this worktree's package; returns its peak resident memory (MiB), its
    standard output and error. The script ends with `PRINT_PEAK`."""
    if not os.path.exists("/proc/self/status"):
        pytest.skip("the peak memory is read from /proc/self/status (Linux)")
    environment = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *map(str, arguments)],
                            capture_output=True, text=True, env=environment, timeout=600)  # fmt: skip
    assert "PEAK " in result.stdout, result.stderr[-3000:]
    output, peak_kib = result.stdout.rsplit("PEAK ", 1)
    return int(peak_kib) / 1024, output, result.stderr


@pytest.mark.slow
def test_huge_images_are_refused_or_reduced_while_decoding(huge_png, tmp_path):
    with pytest.raises(ImageLoadError, match=r"11000x11000 = 121,000,000 pixels to decode"):
        load_image(huge_png)
    # a JPEG is decoded at a reduced scale, so its pixels count at that scale; the reduction averages, never crops
    Image.fromarray(np.full((9000, 12000, 3), 200, np.uint8)).save(tmp_path / "wide.jpg")
    wide = load_image(tmp_path / "wide.jpg")
    assert max(wide.size) <= DEFAULT_MAX_SIDE and abs(wide.size[0] / wide.size[1] - 4 / 3) < 0.01
    assert abs(np.asarray(wide).astype(float).mean() - 200) < 2


@pytest.mark.slow
def test_predict_memory_on_decompression_sized_pngs(checkpoint, huge_png, largest_png):
    peak, out, err = _peak_rss_mib(
        """
        import sys
        from transformers_hsvlt.cli.predict import main
        print("EXIT", main(sys.argv[1:]))
        """
        + PRINT_PEAK,
        checkpoint, huge_png, largest_png, largest_png, "--threads", "1", "--json",
    )  # fmt: skip
    assert "EXIT 1" in out and out.count(str(largest_png)) == 2, out + err
    assert err.count("\n") == 1 and "huge.png" in err and "121,000,000 pixels" in err, err
    assert peak < 1024, f"hsvlt-predict peaked at {peak:.0f} MiB on 8000x8000 and 11000x11000 PNGs"


@pytest.mark.slow
def test_demo_memory_on_decompression_sized_uploads(checkpoint, huge_png, largest_png):
    pytest.importorskip("gradio", reason="the demo needs gradio (pip install -e '.[demo]')")
    peak, out, err = _peak_rss_mib(
        """
        import socket, sys
        from gradio_client import Client, handle_file
        from transformers_hsvlt.demo import MAX_UPLOAD_BYTES, build_demo
        checkpoint, huge, largest = sys.argv[1:]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        demo = build_demo(checkpoint, device="cpu")
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                    max_file_size=MAX_UPLOAD_BYTES)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        try:
            client.predict(handle_file(huge), 0.0, False, api_name="/run")
        except Exception as error:
            print("REFUSED", " ".join(str(error).split()))
        scores, figure, summary = client.predict(handle_file(largest), 0.0, False, api_name="/run")
        print("LABELS", len(scores["confidences"]))
        demo.close()
        """
        + PRINT_PEAK,
        checkpoint, huge_png, largest_png,
    )  # fmt: skip
    assert "REFUSED" in out and "121,000,000 pixels" in out and "LABELS 10" in out, out + err[-2000:]
    assert peak < 1024, f"the demo peaked at {peak:.0f} MiB answering 11000x11000 and 8000x8000 PNG uploads"


# ---- 11. hostile checkpoint configs: refused from config.json, before anything is built -----------------------------


def _edited_config(edit):
    def apply(directory):
        path = directory / "config.json"
        path.write_text(json.dumps(edit(json.loads(path.read_text()))))

    return apply


def _without(config, *names):
    return {key: value for key, value in config.items() if key not in names}


def _edited_preprocessor(directory):
    path = directory / "preprocessor_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "size": {"height": 20000, "width": 20000}}))


@pytest.mark.parametrize(
    "edit, fragments",
    [
        (
            _edited_config(lambda c: {**_without(c, "id2label", "label2id"), "num_labels": 10**8}),
            ["100,000,000 labels"],
        ),
        (
            _edited_config(lambda c: {**c, "hidden_sizes": [8, 16, 24, 10**6]}),
            ["hidden_sizes 1,000,000", "does not fit"],
        ),
        (_edited_config(lambda c: {**c, "depths": [1, 1, 10**6, 1]}), ["1,000,003 layers", "does not fit"]),
        (_edited_config(lambda c: [c]), ["must hold a JSON object, got list"]),
        (_edited_config(lambda c: None), ["must hold a JSON object"]),
        (_edited_config(lambda c: _without(c, "model_type")), ["has no model_type"]),
        (_edited_preprocessor, ["preprocessor_config.json", "20000"]),
    ],
    ids=["num_labels", "hidden_sizes", "depths", "list", "null", "no_model_type", "preprocessor_size"],
)
@pytest.mark.slow
def test_hostile_checkpoint_configs_are_refused_in_one_line(edit, fragments, checkpoint, images, tmp_path, capsys):
    copy = tmp_path / "hostile"
    shutil.copytree(checkpoint, copy)
    edit(copy)
    refused("hsvlt-predict", [copy, images[0]], capsys, copy, *fragments)
    refused("hsvlt-eval", [copy, "--dataset", "digits", "--digits_test_size", "4"], capsys, *fragments)
    if importlib.util.find_spec("gradio") is not None:
        capsys.readouterr()
        assert demo_main([str(copy)]) == 2
        error = capsys.readouterr().err
        assert error.startswith("hsvlt-demo: error:") and error.count("\n") == 1 and fragments[0] in error, error


# ---- 12. the toolkit never offers to run a checkpoint's tokenizer code ----------------------------------------------


@pytest.fixture(scope="module")
def patchct_checkpoint(workdir):
    """A tiny PatchCT checkpoint (open vocabulary: its tokenizer is saved beside it)."""
    from clip_fixtures import clip_image_processor, tiny_model, tiny_tokenizer

    from transformers_hsvlt import hub
    from transformers_hsvlt.modeling_patchct import PatchCTForMultiLabelClassification

    tokenizer = tiny_tokenizer()
    model = tiny_model(PatchCTForMultiLabelClassification, tokenizer)
    model.class_name_tokenizer = tokenizer
    directory = workdir / "patchct"
    hub.prepare_for_push(model, clip_image_processor(), directory)
    return directory


@pytest.mark.slow
def test_tokenizer_code_in_a_checkpoint_is_never_offered_or_run(patchct_checkpoint, images, tmp_path):
    copy = tmp_path / "patchct"
    shutil.copytree(patchct_checkpoint, copy)
    marker = tmp_path / "code-ran"
    (copy / "evil_tokenizer.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    config = json.loads((copy / "tokenizer_config.json").read_text())
    config.update(tokenizer_class="EvilTokenizer", auto_map={"AutoTokenizer": ["evil_tokenizer.EvilTokenizer", None]})
    (copy / "tokenizer_config.json").write_text(json.dumps(config))
    environment = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "transformers_hsvlt.cli.predict", str(copy), str(images[0])],
                            input="y\ny\n", capture_output=True, text=True, env=environment, timeout=300)  # fmt: skip
    assert not marker.exists(), "the checkpoint's tokenizer code ran"
    assert "Do you wish to run the custom code" not in result.stdout + result.stderr  # transformers' prompt
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert "tokenizer_config.json names code" in result.stderr and "trust_remote_code=True" not in result.stderr


# ---- 13. a pickled backbone is refused in one line ------------------------------------------------------------------


def test_pickled_backbone_directory_is_refused_in_one_line(tmp_path, capsys):
    import torch
    from transformers import ConvNextConfig

    backbone = tmp_path / "convnext"
    ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1]).save_pretrained(backbone)
    marker = tmp_path / "code-ran"
    torch.save({"weight": _RunsCode(str(marker))}, backbone / "pytorch_model.bin")
    arguments = [*commands.TINY_RUN, "--backbone", backbone, "--output_dir", tmp_path / "out"]
    refused("hsvlt-train", arguments, capsys, backbone, "pytorch_model.bin", "never unpickled")
    assert not marker.exists()


class _RunsCode:
    """Unpickling it would create `marker` (a stand-in for any code)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


# ---- one-line errors of hsvlt-predict, hsvlt-eval and the image loader ---------------------------------------------


def test_eval_plots_undefined_on_the_split_are_skipped_with_a_note(checkpoint, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(checkpoint, model)
    arguments = commands._list_dataset(tmp_path, "\n".join(commands.DIGITS) + "\n", "a.png\t\nb.png\t\n")
    code, out, err = run("hsvlt-eval", [model, *arguments, "--plots", tmp_path / "plots"], capsys)
    assert code == 0, err
    assert sorted(path.name for path in (tmp_path / "plots").iterdir()) == ["per_class_ap.png", "precision_recall.png"]
    notes = err.strip().splitlines()
    assert len(notes) == 1 and notes[0].startswith("hsvlt-eval: note: f1_threshold.png not written"), err


def test_unwritable_plots_folder_is_refused_before_evaluating(tmp_path, capsys):
    """The checkpoint cannot even be loaded: the refusal of `--plots` came first."""
    unloadable = tmp_path / "unloadable"
    (tmp_path / "plots").write_text("a file")
    arguments = [unloadable, "--dataset", "digits", "--digits_test_size", "4", "--plots", tmp_path / "plots"]
    refused("hsvlt-eval", arguments, capsys, "--plots", "is a file")


def test_fifo_and_devices_are_named_as_such(checkpoint, images, tmp_path, capsys):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    code, out, err = run("hsvlt-predict", [checkpoint, fifo, "/dev/zero", images[0]], capsys)
    assert code == 1 and str(images[0]) in out
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in err, err
    assert str(fifo) in lines[0] and "a FIFO (named pipe), not a regular file" in lines[0]
    assert "/dev/zero" in lines[1] and "a device or socket, not a regular file" in lines[1]


def test_label_names_with_a_newline_are_refused(patchct_checkpoint, images, capsys):
    refused("hsvlt-predict", [patchct_checkpoint, images[0], "--labels", "cat,do\ng"], capsys, "--labels", "printable")


def test_long_names_are_cut_in_error_lines(checkpoint, images, capsys):
    long_name = "a" * 3000 + ".png"
    code, out, err = run("hsvlt-predict", [checkpoint, long_name, images[0]], capsys)
    assert code == 1 and str(images[0]) in out
    (line,) = err.strip().splitlines()
    assert len(line) < 1100 and "characters cut" in line and "no such file" in line, line


def _interrupted(command: list[str], ready: str) -> subprocess.CompletedProcess:
    """Start a command in a subprocess, send it SIGINT once `ready` appears in its output (progress bars included:
    read as it comes, not by lines), and wait for it."""
    environment = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", *map(str, command)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, env=environment, preexec_fn=restore_default_sigint)  # fmt: skip
    output = b""
    while ready.encode() not in output and process.poll() is None:
        output += os.read(process.stdout.fileno(), 1 << 16)
    process.send_signal(signal.SIGINT)
    output += process.communicate(timeout=120)[0]
    return subprocess.CompletedProcess(command, process.returncode, output.decode(errors="replace"))


@pytest.mark.slow
def test_ctrl_c_in_predict_and_eval_is_one_line(checkpoint, images, tmp_path):
    predicted = _interrupted(
        ["transformers_hsvlt.cli.predict", checkpoint, *(images * 400), "--batch_size", "1", "--threads", "1"],
        ready=str(images[0]),
    )
    assert predicted.returncode in CTRL_C_RETURN_CODES, predicted.stdout[-2000:]
    assert "Traceback" not in predicted.stdout and predicted.stdout.count("hsvlt-predict: interrupted") == 1
    evaluated = _interrupted(
        ["transformers_hsvlt.cli.evaluate", checkpoint, "--dataset", "digits", "--digits_test_size", "2000",
         "--batch_size", "1", "--num_workers", "0", "--threads", "1"],
        ready="%",
    )  # fmt: skip
    assert evaluated.returncode in CTRL_C_RETURN_CODES, evaluated.stdout[-2000:]
    assert "Traceback" not in evaluated.stdout and evaluated.stdout.count("hsvlt-eval: interrupted") == 1


def test_corrupt_image_in_a_stream_is_named_by_its_row(tmp_path, capsys):
    from datasets import Dataset, DatasetDict, Features, Sequence, Value
    from datasets import Image as ImageFeature

    from transformers_hsvlt.cli import train as train_cli

    rows = []
    for index in range(8):
        encoded = BytesIO()
        Image.new("RGB", (16, 16), (index * 30, 0, 0)).save(encoded, "PNG")
        data = encoded.getvalue()
        rows.append({"image": {"bytes": data[: len(data) // 2] if index == 5 else data, "path": None},
                     "labels": ["cat"] if index % 2 else ["dog"]})  # fmt: skip
    features = Features({"image": ImageFeature(), "labels": Sequence(Value("string"))})
    splits = {
        "train": Dataset.from_list(rows, features=features),
        "test": Dataset.from_list(rows[:4], features=features),
    }
    DatasetDict(splits).save_to_disk(str(tmp_path / "stream"))
    (tmp_path / "labels.txt").write_text("cat\ndog\n")
    arguments = ["--dataset", "hub", "--data_dir", tmp_path / "stream", "--streaming", "--eval_split", "test",
                 "--label_file", tmp_path / "labels.txt", "--max_steps", "2", "--per_device_train_batch_size", "8",
                 "--output_dir", tmp_path / "out", "--random_label_embedding_size", "16", "--preset", "tiny",
                 "--dataloader_num_workers", "0", "--quiet"]  # fmt: skip
    capsys.readouterr()
    code = train_cli.main([str(argument) for argument in arguments])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert "row 5" in err.strip().splitlines()[-1], err


def test_open_vocabulary_names_of_unknown_words_are_warned_about(patchct_checkpoint, images, capsys):
    code, out, err = run("hsvlt-predict", [patchct_checkpoint, images[0], "--labels", "cat,zebra,okapi"], capsys)
    assert code == 0 and str(images[0]) in out, err
    (line,) = err.strip().splitlines()
    assert line.startswith("hsvlt-predict: warning: zebra, okapi:") and "all score alike" in line, line
