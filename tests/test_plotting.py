import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sklearn_splice import concept_distribution, plot_coefficients, plot_concepts, plot_prevalence  # noqa: E402

NAMES = ["sea", "sand", "swimwear", "snow", "tree"]
W = np.array([[0.5, 0.2, 0.3, 0.0, 0.0], [0.4, 0.0, 0.2, 0.0, 0.0], [0.0, 0.0, 0.0, 0.6, 0.1]])


def labels(ax):
    return [t.get_text() for t in ax.get_yticklabels()]


def test_plot_concepts_draws_top_bars(tmp_path):
    ax = plot_concepts([("sea", 0.5), ("sand", 0.2), ("swimwear", 0.3)], top=2, title="beach")
    assert len(ax.patches) == 2 and labels(ax) == ["swimwear", "sea"]  # largest at the top
    assert ax.get_title() == "beach"
    ax.figure.savefig(tmp_path / "bars.png")
    assert (tmp_path / "bars.png").stat().st_size > 1000
    ax2 = plot_concepts(NAMES, W[2])
    assert [p.get_width() for p in ax2.patches][-1] == 0.6
    plt.close("all")


def test_plot_prevalence_groups(tmp_path):
    dist = concept_distribution(W, NAMES, ["beach", "beach", "ski"])
    ax = plot_prevalence(dist, ["sea", "snow"])
    assert len(ax.patches) == 4  # 2 concepts x 2 classes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["sea", "snow"]
    heights = sorted(p.get_height() for p in ax.patches)
    assert heights == [0.0, 0.0, 1.0, 1.0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["beach", "ski"]
    ax.figure.savefig(tmp_path / "prev.png")
    with pytest.raises(ValueError, match="not in the distribution"):
        plot_prevalence(dist, ["lava"])
    plt.close("all")


def test_plot_coefficients_signs():
    X = np.array([[1.0, 0, 0], [0.9, 0, 0.1], [0, 1.0, 0], [0, 0.8, 0.1]])
    clf = LogisticRegression().fit(X, [0, 0, 1, 1])
    fig, ax = plt.subplots()
    out = plot_coefficients(clf, ["x", "y", "z"], top=2, ax=ax)
    assert out is ax and len(ax.patches) == 2
    colors = {lab: p.get_facecolor() for lab, p in zip(labels(ax), ax.patches)}
    assert colors["y"] != colors["x"]  # positive vs negative
    plt.close("all")
