"""Plot builders: result records in, plotly figures out.

Pure functions over the typed records of ``reprog_core.results`` (``ExperimentRecord``,
``FitResult``, ``KernelResult``, ``SourceResult``, ``KernelRegime``; a config is an
``ExperimentConfig``) and over table rows (``ExperimentRecord.sweep_row`` dicts, also read back
from saved sweeps). No Streamlit here: the dashboard and the sweep's HTML report draw the same
figures, and the tests check them without a browser.

``theme`` is the one house style (colours, names, numbers, title, random-weights marks, layout);
the builders, by subject: ``spectrum`` (kernel spectra and their statistics), ``curves`` (fit
curves: loss and accuracy, one fit or several), ``captions`` (what those figures mean, in words),
``images`` (what the source model sees), ``source`` (the source model card), ``learn`` (the Learn
page's demonstrations), ``sweep`` (sweep rows against depth). The names below are the public ones;
pages use them as ``figures.<name>``.
"""

from reprog_core.figures.captions import (
    kernel_regime_caption,
    practical_regime_note,
    prediction_explodes,
    spectrum_timescales,
    statistics_verdict,
)
from reprog_core.figures.curves import (
    curves_overlay_figure,
    fit_curves_figure,
    prediction_horizon,
)
from reprog_core.figures.images import image_to_uint8, transform_examples_figure
from reprog_core.figures.learn import convergence_demo_figure, width_demo_figure
from reprog_core.figures.source import source_card_rows, weights_description
from reprog_core.figures.spectrum import (
    SPECTRAL_STATS,
    kernel_description,
    spectra_overlay_figure,
    spectrum_figure,
    spectrum_stats_rows,
)
from reprog_core.figures.sweep import (
    source_accuracy_figure,
    spectrum_depth_figure,
    stat_accuracy_figure,
    target_accuracy_figure,
)
from reprog_core.figures.theme import (
    TRANSFORM_COLORS,
    TRANSFORM_NAMES,
    duration,
    fmt,
    pct,
    random_weights_text,
    to_standalone_html,
    weights_note,
)

__all__ = [
    "SPECTRAL_STATS",
    "TRANSFORM_COLORS",
    "TRANSFORM_NAMES",
    "convergence_demo_figure",
    "curves_overlay_figure",
    "duration",
    "fit_curves_figure",
    "fmt",
    "image_to_uint8",
    "kernel_description",
    "kernel_regime_caption",
    "pct",
    "practical_regime_note",
    "prediction_explodes",
    "prediction_horizon",
    "source_accuracy_figure",
    "source_card_rows",
    "spectra_overlay_figure",
    "spectrum_depth_figure",
    "spectrum_figure",
    "spectrum_stats_rows",
    "spectrum_timescales",
    "statistics_verdict",
    "stat_accuracy_figure",
    "target_accuracy_figure",
    "to_standalone_html",
    "transform_examples_figure",
    "random_weights_text",
    "weights_description",
    "weights_note",
    "width_demo_figure",
]
