"""ONNX export (`torch.onnx.export(..., dynamo=True)`) of the classifier, checked against PyTorch with onnxruntime."""

import numpy as np
import pytest
import torch
from conftest import tiny_config

from transformers_hsvlt import HSVLTForMultiLabelClassification
from transformers_hsvlt.export import export_onnx


onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def pytorch_logits(model, pixel_values):
    with torch.no_grad():
        return model.eval()(pixel_values).logits.numpy()


def onnx_logits(session, pixel_values):
    (logits,) = session.run(["logits"], {"pixel_values": pixel_values.numpy()})
    return logits


@pytest.mark.slow
def test_export_with_fixed_batch_and_image_size(tmp_path):
    torch.manual_seed(0)
    model = HSVLTForMultiLabelClassification(tiny_config(num_attention_heads=2, fold_label_attention=False))
    path = export_onnx(model, tmp_path / "hsvlt.onnx", image_size=96, batch_size=3, dynamic_batch=False, opset=18)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [3, 3, 96, 96]
    assert session.get_outputs()[0].shape == [3, model.config.num_labels]
    pixel_values = torch.rand(3, 3, 96, 96)
    expected = pytorch_logits(model, pixel_values)
    np.testing.assert_allclose(onnx_logits(session, pixel_values), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_export_with_dynamic_batch_uses_the_weight_products_and_matches_pytorch(tmp_path, monkeypatch):
    """The exported graph computes IVLA with the weight products (constant-folded by ONNX Runtime at load time), never
    the eager cache; its batch dimension is symbolic; the model's mode is restored."""
    from transformers_hsvlt.modeling_hsvlt_attention import HSVLTWeightProducts

    calls = []
    compute = HSVLTWeightProducts.compute.__func__

    def spy(cls, attention, cache=True):
        calls.append(cache)
        return compute(cls, attention, cache)

    monkeypatch.setattr(HSVLTWeightProducts, "compute", classmethod(spy))
    torch.manual_seed(0)
    model = HSVLTForMultiLabelClassification(tiny_config()).train()
    path = export_onnx(model, tmp_path / "onnx" / "hsvlt.onnx")
    assert path.exists() and model.training  # the mode the model was in is restored
    assert calls and not any(calls)  # graph operations, never the eager cache
    assert all(module.weight_products is None for module in model.modules() if hasattr(module, "weight_products"))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (graph_input,), (graph_output,) = session.get_inputs(), session.get_outputs()
    assert (graph_input.name, graph_output.name) == ("pixel_values", "logits")
    assert graph_input.shape[1:] == [3, 64, 64] and isinstance(graph_input.shape[0], str)
    for batch_size in (1, 2, 5):
        pixel_values = torch.rand(batch_size, 3, 64, 64)
        expected = pytorch_logits(model, pixel_values)
        np.testing.assert_allclose(onnx_logits(session, pixel_values), expected, rtol=1e-4, atol=1e-4)
        assert expected.std() > 0.01
