"""Figs. 2 to 10 of Lucie-Smith et al. (2024, PRD 109, 063524), one function each.

Every function reads the workflow's files, draws with matplotlib's Agg backend and saves the
figure atomically with its provenance in the file metadata (see :func:`save_figure`). The
format follows the output's suffix (png, pdf or svg); ``settings`` is the ``figures``
configuration section (``dpi``, ``mass_bin_edges``).
"""

from halo_ml.figures._common import FigureInputError, credible_levels, save_figure
from halo_ml.figures.information import fig4
from halo_ml.figures.predictions import fig2, fig3, fig5, fig6, fig7, fig10
from halo_ml.figures.training import fig8, fig9, truncated_cauchy_pdf

__all__ = ["FigureInputError", "credible_levels", "save_figure", "truncated_cauchy_pdf",
           "fig2", "fig3", "fig4", "fig5", "fig6", "fig7", "fig8", "fig9", "fig10"]
