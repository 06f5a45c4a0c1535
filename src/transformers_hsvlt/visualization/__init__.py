"""Pictures people can read: per-label heatmaps (`gradcam`), prediction figures (`figures`) and evaluation plots
(`plots`). Figures and plots need matplotlib (`pip install -e ".[demo]"`), imported only when one is drawn."""

from .figures import labels_in_file_name, prediction_figure, save_prediction_figure, save_raw_maps, unique_stems
from .gradcam import (
    DEFAULT_METHOD,
    DEFAULT_STAGE,
    METHODS,
    add_label_heatmaps,
    heatmap_peak,
    label_heatmaps,
    pointing_game,
    upsample_heatmaps,
)
from .plots import save_evaluation_plots


__all__ = [
    "DEFAULT_METHOD",
    "DEFAULT_STAGE",
    "METHODS",
    "add_label_heatmaps",
    "heatmap_peak",
    "label_heatmaps",
    "labels_in_file_name",
    "pointing_game",
    "prediction_figure",
    "save_evaluation_plots",
    "save_prediction_figure",
    "save_raw_maps",
    "unique_stems",
    "upsample_heatmaps",
]
