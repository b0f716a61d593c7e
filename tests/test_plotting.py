import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
pd = pytest.importorskip("pandas")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

from sklearn_splice import (  # noqa: E402
    SpliceTransformer,
    concept_distribution,
    plot_coefficients,
    plot_concepts,
    plot_prevalence,
)
from sklearn_splice._plotting import (  # noqa: E402
    CoefficientDisplay,
    ConceptDisplay,
    ContributionDisplay,
    PrevalenceDisplay,
)

NAMES = ["sea", "sand", "swimwear", "snow", "tree"]
W = np.array([[0.5, 0.2, 0.3, 0.0, 0.0], [0.4, 0.0, 0.2, 0.0, 0.0], [0.0, 0.0, 0.0, 0.6, 0.1]])
Y = ["beach", "beach", "ski"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def labels(ax):
    """Tick labels of the y axis, from the bottom up."""
    return [t.get_text() for t in ax.get_yticklabels()]


def widths(bars):
    return [float(b.get_width()) for b in bars]


# --- the plot_* functions, thin wrappers returning the Axes --------------------------------


def test_plot_concepts_draws_top_bars(tmp_path):
    ax = plot_concepts([("sea", 0.5), ("sand", 0.2), ("swimwear", 0.3)], top=2, title="beach")
    assert len(ax.patches) == 2 and labels(ax) == ["swimwear", "sea"]  # largest at the top
    assert ax.get_title() == "beach"
    ax.figure.savefig(tmp_path / "bars.png")
    assert (tmp_path / "bars.png").stat().st_size > 1000
    ax2 = plot_concepts(NAMES, W[2])
    assert [p.get_width() for p in ax2.patches][-1] == 0.6
    ax3 = plot_concepts(pd.Series([0.1, 0.7], index=["sky", "sun"]))
    assert labels(ax3) == ["sky", "sun"] and ax3.get_title() == ""


def test_plot_prevalence_groups(tmp_path):
    dist = concept_distribution(W, NAMES, Y)
    ax = plot_prevalence(dist, ["sea", "snow"])
    assert len(ax.patches) == 4  # 2 concepts x 2 classes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["sea", "snow"]
    heights = sorted(p.get_height() for p in ax.patches)
    assert heights == [0.0, 0.0, 1.0, 1.0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["beach", "ski"]
    ax.figure.savefig(tmp_path / "prev.png")
    with pytest.raises(ValueError, match="not in the distribution"):
        plot_prevalence(dist, ["lava"])


def test_plot_coefficients_signs():
    X = np.array([[1.0, 0, 0], [0.9, 0, 0.1], [0, 1.0, 0], [0, 0.8, 0.1]])
    clf = LogisticRegression().fit(X, [0, 0, 1, 1])
    fig, ax = plt.subplots()
    out = plot_coefficients(clf, ["x", "y", "z"], top=2, ax=ax)
    assert out is ax and len(ax.patches) == 2
    colors = {lab: p.get_facecolor() for lab, p in zip(labels(ax), ax.patches)}
    assert colors["y"] != colors["x"]  # positive vs negative
    assert ax.get_title() == ""


# --- ConceptDisplay ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "form", [np.asarray, sp.csr_matrix, lambda a: pd.DataFrame(a, columns=NAMES)]
)
def test_concept_display_one_input(form):
    disp = ConceptDisplay.from_weights(form(W), NAMES, index=0, top=2)
    assert disp.concepts == ["sea", "swimwear"] and disp.values.tolist() == [0.5, 0.3]
    assert widths(disp.bars_) == [0.5, 0.3]  # bars_ follow concepts, largest first
    assert labels(disp.ax_) == ["swimwear", "sea"]  # the largest at the top
    assert disp.bars_[0].get_y() > disp.bars_[1].get_y()
    assert disp.ax_.get_title() == "concepts of input 0"
    assert disp.ax_.get_xlabel() == "weight"
    assert disp.figure_ is disp.ax_.figure


def test_concept_display_leaves_out_zero_weights_and_takes_the_mean():
    disp = ConceptDisplay.from_weights(W, NAMES, index=2, top=None)
    assert disp.concepts == ["snow", "tree"]  # zero weights get no bar
    mean = ConceptDisplay.from_weights(W, NAMES)
    expected = W.mean(axis=0)
    assert mean.concepts == ["sea", "snow", "swimwear", "sand", "tree"]
    np.testing.assert_allclose(widths(mean.bars_), np.sort(expected)[::-1])
    assert mean.ax_.get_xlabel() == "mean weight"
    assert mean.ax_.get_title() == "mean concept weights over 3 inputs"
    assert ConceptDisplay.from_weights(W, NAMES, title="mine").ax_.get_title() == "mine"


def test_concept_display_draws_on_given_axes():
    fig, (left, right) = plt.subplots(1, 2)
    disp = ConceptDisplay.from_weights(W, NAMES, index=1, ax=right, color="green")
    assert disp.ax_ is right and disp.figure_ is fig
    assert len(right.patches) == 2 and not left.patches
    assert all(b.get_facecolor() == to_rgba("green") for b in disp.bars_)
    again = ConceptDisplay(["a"], [1.0]).plot(ax=left)
    assert again.ax_ is left and again.ax_.get_title() == ""


@pytest.mark.parametrize("index", [3, -1, 1.0, True])
def test_concept_display_bad_index(index):
    with pytest.raises(ValueError, match="index must be an integer"):
        ConceptDisplay.from_weights(W, NAMES, index=index)


def test_concept_display_bad_arguments():
    with pytest.raises(ValueError, match="top must be"):
        ConceptDisplay.from_weights(W, NAMES, top=-1)
    with pytest.raises(ValueError, match="feature names"):
        ConceptDisplay.from_weights(W, NAMES[:3])
    with pytest.raises(ValueError, match="3 concepts were given for 2 values"):
        ConceptDisplay(["a", "b", "c"], [1.0, 2.0]).plot()


def test_concept_display_from_distribution():
    dist = concept_distribution(W, NAMES, Y)
    beach = ConceptDisplay.from_distribution(dist, group="beach")
    assert beach.concepts == ["sea", "swimwear", "sand"]
    assert widths(beach.bars_) == [1.0, 1.0, 0.5]
    assert beach.ax_.get_title() == "prevalence of concepts in beach"
    means = ConceptDisplay.from_distribution(dist, group="ski", column="mean_weight", top=1)
    assert means.concepts == ["snow"] and widths(means.bars_) == [0.6]
    assert means.ax_.get_xlabel() == "mean weight"
    whole = ConceptDisplay.from_distribution(concept_distribution(W, NAMES))
    assert whole.ax_.get_title() == "prevalence of concepts"
    assert whole.concepts == ["sea", "swimwear", "snow", "sand", "tree"]  # then mean weight
    np.testing.assert_allclose(widths(whole.bars_), [2 / 3, 2 / 3, 1 / 3, 1 / 3, 1 / 3])
    with pytest.raises(ValueError, match="several groups"):
        ConceptDisplay.from_distribution(dist)
    with pytest.raises(ValueError, match="'desert' is not in the distribution"):
        ConceptDisplay.from_distribution(dist, group="desert")
    with pytest.raises(ValueError, match="lacks the columns"):
        ConceptDisplay.from_distribution(dist, group="ski", column="median")


# --- PrevalenceDisplay ------------------------------------------------------------------


def test_prevalence_display_bars_equal_the_table():
    dist = concept_distribution(W, NAMES, Y)
    disp = PrevalenceDisplay.from_distribution(dist, ["swimwear", "tree", "sea"])
    expected = [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]  # beach, ski x swimwear, tree, sea
    assert disp.prevalence.tolist() == expected and disp.groups == ["beach", "ski"]
    heights = [[float(b.get_height()) for b in row] for row in disp.bars_]
    assert heights == expected
    # Each cluster is centred on its tick, the groups side by side from left to right.
    ticks = disp.ax_.get_xticks()
    for j in range(3):
        beach, ski = disp.bars_[0, j], disp.bars_[1, j]
        assert beach.get_x() < ski.get_x()
        centre = (beach.get_x() + ski.get_x() + ski.get_width()) / 2
        assert centre == pytest.approx(ticks[j])
    assert [t.get_text() for t in disp.ax_.get_xticklabels()] == ["swimwear", "tree", "sea"]
    assert [t.get_text() for t in disp.legend_.get_texts()] == ["beach", "ski"]
    assert disp.ax_.get_title() == "prevalence by class"
    assert disp.ax_.get_ylabel() == "prevalence"


def test_prevalence_display_chooses_each_class_top_concepts():
    disp = PrevalenceDisplay.from_predictions(W, NAMES, Y, top=1)
    assert disp.concepts == ["sea", "snow"]  # beach's first, then ski's
    assert disp.prevalence.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    every = PrevalenceDisplay.from_predictions(W, NAMES, Y, top=None)
    assert every.concepts == ["sea", "swimwear", "sand", "snow", "tree"]  # none at zero
    chosen = PrevalenceDisplay.from_predictions(W, NAMES, Y, concepts=["tree"], title="t")
    assert chosen.prevalence.tolist() == [[0.0], [1.0]] and chosen.ax_.get_title() == "t"


def test_prevalence_display_draws_on_given_axes_and_checks_concepts():
    fig, ax = plt.subplots()
    dist = concept_distribution(W, NAMES, Y)
    disp = PrevalenceDisplay.from_distribution(dist, ["sea"], ax=ax, alpha=0.5)
    assert disp.ax_ is ax and disp.figure_ is fig and len(ax.patches) == 2
    assert disp.bars_[0, 0].get_alpha() == 0.5
    with pytest.raises(ValueError, match=r"not in the distribution: \['lava'\]"):
        PrevalenceDisplay.from_distribution(dist, ["sea", "lava"])
    with pytest.raises(ValueError, match="lacks the columns"):
        PrevalenceDisplay.from_distribution(dist.drop(columns="prevalence"))
    with pytest.raises(ValueError, match="shape"):
        PrevalenceDisplay([[0.1, 0.2]], ["a"], ["g"]).plot()


# --- CoefficientDisplay -----------------------------------------------------------------


def test_coefficient_display_multiclass_rows():
    X = np.eye(3).repeat(2, axis=0) + 0.05
    clf = LogisticRegression().fit(X, ["beach", "beach", "forest", "forest", "ski", "ski"])
    for k, label in enumerate(clf.classes_):
        disp = CoefficientDisplay.from_estimator(clf, ["sand", "tree", "snow"], class_index=k)
        coef = clf.coef_[k]
        order = np.argsort(-np.abs(coef), kind="stable")
        assert disp.concepts == [["sand", "tree", "snow"][j] for j in order]
        np.testing.assert_array_equal(widths(disp.bars_), coef[order])
        assert disp.class_label == label
        assert disp.ax_.get_title() == f"coefficients for {label}"
        for bar, value in zip(disp.bars_, coef[order]):
            assert bar.get_facecolor() == to_rgba("tab:blue" if value >= 0 else "tab:red")
        assert list(disp.zero_line_.get_xdata()) == [0, 0]
    with pytest.raises(ValueError, match="index must be an integer in \\[0, 3\\)"):
        CoefficientDisplay.from_estimator(clf, ["sand", "tree", "snow"], class_index=3)


def test_coefficient_display_binary_and_errors():
    X = np.array([[1.0, 0, 0], [0.9, 0, 0.1], [0, 1.0, 0], [0, 0.8, 0.1]])
    clf = LogisticRegression().fit(X, ["sea", "sea", "snow", "snow"])
    fig, ax = plt.subplots()
    disp = CoefficientDisplay.from_estimator(clf, ["waves", "ice", "sky"], top=2, ax=ax)
    assert disp.ax_ is ax and disp.figure_ is fig and len(ax.patches) == 2
    assert disp.class_label == "snow"
    assert disp.ax_.get_title() == "coefficients: > 0 favours snow, < 0 favours sea"
    with pytest.raises(ValueError, match="index must be an integer"):
        CoefficientDisplay.from_estimator(clf, ["waves", "ice", "sky"], class_index=1)
    with pytest.raises(ValueError, match="3 coefficients for 2 names"):
        CoefficientDisplay.from_estimator(clf, ["waves", "ice"])
    with pytest.raises(ValueError, match="feature_names is needed"):
        CoefficientDisplay.from_estimator(clf)
    with pytest.raises(ValueError, match="no coef_"):
        CoefficientDisplay.from_estimator(StandardScaler().fit(X), ["a", "b", "c"])


# --- a fitted SpLiCE pipeline on a toy encoder ------------------------------------------

VOCAB = ["sofa", "grass", "ball", "leash", "yarn", "tree", "snow", "bed", "sun", "fence"]


class Toy:
    """Stands in for CLIP: fixed random vectors of width 8; inputs are embeddings."""

    def cache_identity(self):
        return "toy-plotting-width-8"

    def encode_text(self, texts):
        return np.random.RandomState(0).randn(len(texts), 8)

    def encode_image(self, X):
        return np.asarray(X)


def _splice(**params):
    return SpliceTransformer(Toy(), vocabulary=VOCAB, l1_penalty=0.02, device="cpu",
                             cache_dir=False, **params)


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(1)
    return rng.randn(30, 8), np.array(["cat"] * 10 + ["dog"] * 10 + ["fox"] * 10)


@pytest.fixture(scope="module")
def multiclass(data):
    X, y = data
    # A centring scaler needs dense weights; explain_predictions folds it into the terms.
    splice = _splice(sparse_output=False)
    return make_pipeline(splice, StandardScaler(), LogisticRegression()).fit(X, y)


@pytest.fixture(scope="module")
def binary(data):
    X, y = data
    return make_pipeline(_splice(), LogisticRegression()).fit(X[:20], y[:20])


def test_coefficient_display_reads_names_from_a_pipeline_or_search(binary, data):
    X, y = data
    disp = CoefficientDisplay.from_estimator(binary, top=None)
    clf = binary[-1]
    assert sorted(disp.concepts) == sorted(VOCAB)
    by_name = dict(zip(disp.concepts, widths(disp.bars_)))
    assert by_name == dict(zip(binary[0].get_feature_names_out(), clf.coef_[0]))
    search = GridSearchCV(make_pipeline(_splice(), LogisticRegression()),
                          {"logisticregression__C": [1.0]}, cv=2).fit(X[:20], y[:20])
    found = CoefficientDisplay.from_estimator(search, top=3)
    assert len(found.bars_) == 3 and found.class_label == "dog"


# --- ContributionDisplay ----------------------------------------------------------------

COLUMNS = ["sample", "class", "term", "kind", "weight", "coefficient", "contribution"]
NAN = float("nan")


def hand_made_frame():
    """Two samples, two classes; sample 1 was already cut to one concept plus "(rest)"."""
    rows = [
        (0, "cat", "sofa", "concept", 0.5, 2.0, 1.0),
        (0, "cat", "yarn", "concept", 0.4, -1.5, -0.6),
        (0, "cat", "ball", "concept", 0.2, 1.0, 0.2),
        (0, "cat", "bed", "concept", 0.1, -0.5, -0.05),
        (0, "cat", "(intercept)", "intercept", NAN, NAN, 0.25),
        (0, "dog", "yarn", "concept", 0.4, 3.0, 1.2),
        (0, "dog", "sofa", "concept", 0.5, 1.0, 0.5),
        (0, "dog", "(intercept)", "intercept", NAN, NAN, -0.3),
        (1, "cat", "grass", "concept", 0.3, -2.0, -0.6),
        (1, "cat", "(intercept)", "intercept", NAN, NAN, 0.25),
        (1, "cat", "(rest)", "rest", NAN, NAN, 0.15),
        (1, "dog", "grass", "concept", 0.3, 1.0, 0.3),
        (1, "dog", "(intercept)", "intercept", NAN, NAN, -0.3),
        (1, "dog", "(rest)", "rest", NAN, NAN, 0.0),
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def assert_waterfall(disp, terms, contributions):
    """The bars chain from zero through every step and the last bar is the total."""
    assert disp.terms == terms
    np.testing.assert_allclose(disp.contributions, contributions)
    ends = np.cumsum(contributions)
    starts = np.concatenate([[0.0], ends[:-1]])
    np.testing.assert_allclose(disp.starts_, starts)
    np.testing.assert_allclose(disp.ends_, ends)
    np.testing.assert_allclose([b.get_x() for b in disp.bars_], starts)
    np.testing.assert_allclose([b.get_x() + b.get_width() for b in disp.bars_], ends)
    assert disp.total_bar_.get_x() == 0
    assert disp.total_bar_.get_width() == pytest.approx(ends[-1])
    assert disp.decision_value_ == pytest.approx(ends[-1])
    ticks = [t.get_text() for t in disp.ax_.get_yticklabels()]
    assert ticks == terms + ["decision function"]  # read from the top down
    ys = [b.get_y() for b in disp.bars_] + [disp.total_bar_.get_y()]
    assert ys == sorted(ys)  # the first term has the lowest y ...
    bottom, top = disp.ax_.get_ylim()
    assert bottom > top  # ... and the y axis runs downwards, so it is at the top


def test_contribution_display_from_a_hand_made_frame():
    frame = hand_made_frame()
    disp = ContributionDisplay.from_contributions(frame, index=0, class_label="cat", top=2)
    # Intercept, concepts by |contribution|, the two cut concepts as "(rest)".
    assert_waterfall(disp, ["(intercept)", "sofa", "yarn", "(rest)"],
                     [0.25, 1.0, -0.6, 0.2 - 0.05])
    assert disp.kinds == ["intercept", "concept", "concept", "rest"]
    assert disp.decision_value_ == pytest.approx(0.8)
    assert disp.sample == 0 and disp.class_label == "cat"
    assert disp.ax_.get_title() == "input 0: decision function for cat = 0.8"
    colors = [b.get_facecolor() for b in disp.bars_]
    assert colors[1] == to_rgba("tab:blue") and colors[2] == to_rgba("tab:red")
    assert [t.get_text().strip() for t in disp.texts_] == ["+0.25", "+1", "-0.6", "+0.15", "0.8"]


def test_contribution_display_rest_and_top():
    frame = hand_made_frame()
    every = ContributionDisplay.from_contributions(frame, class_label="cat", top=None)
    assert_waterfall(every, ["(intercept)", "sofa", "yarn", "ball", "bed"],
                     [0.25, 1.0, -0.6, 0.2, -0.05])  # nothing cut: no "(rest)"
    none = ContributionDisplay.from_contributions(frame, class_label="cat", top=0)
    assert_waterfall(none, ["(intercept)", "(rest)"], [0.25, 0.55])
    # The frame's own "(rest)" is kept, and anything cut here joins it.
    kept = ContributionDisplay.from_contributions(frame, index=1, class_label="cat")
    assert_waterfall(kept, ["(intercept)", "grass", "(rest)"], [0.25, -0.6, 0.15])
    joined = ContributionDisplay.from_contributions(frame, index=1, class_label="cat", top=0)
    assert_waterfall(joined, ["(intercept)", "(rest)"], [0.25, -0.45])


def test_contribution_display_chooses_the_predicted_class():
    frame = hand_made_frame()
    # Sample 0 scores cat 0.8, dog 1.4; sample 1 scores cat -0.2, dog 0.0.
    assert ContributionDisplay.from_contributions(frame, index=0).class_label == "dog"
    assert ContributionDisplay.from_contributions(frame, index=1).class_label == "dog"
    only_cat = frame[frame["class"] == "cat"]
    assert ContributionDisplay.from_contributions(only_cat, index=1).class_label == "cat"


def test_contribution_display_draws_on_given_axes_twice():
    fig, ax = plt.subplots()
    frame = hand_made_frame()
    first = ContributionDisplay.from_contributions(frame, ax=ax, show_values=False, height=0.5)
    assert first.ax_ is ax and first.figure_ is fig and first.texts_ is None
    assert all(b.get_height() == 0.5 for b in first.bars_)
    second = ContributionDisplay.from_contributions(frame, ax=ax, title="again")
    assert second.ax_ is ax and ax.get_title() == "again"
    bottom, top = ax.get_ylim()
    assert bottom > top  # still read from the top down
    plain = ContributionDisplay(["(intercept)", "x", "(rest)"], [1.0, -2.0, 0.5]).plot()
    assert plain.kinds is None and plain.ax_.get_title() == ""
    assert plain.bars_[0].get_facecolor() == to_rgba("tab:gray")
    assert plain.bars_[2].get_facecolor() == to_rgba("lightgray")
    assert plain.decision_value_ == -0.5 and plain.total_bar_.get_width() == -0.5


def test_contribution_display_refuses_bad_index_class_and_frame():
    frame = hand_made_frame()
    with pytest.raises(ValueError, match=r"index 2 is not a sample of the frame.*\[0, 1\]"):
        ContributionDisplay.from_contributions(frame, index=2)
    with pytest.raises(ValueError, match="index True is not a sample"):
        ContributionDisplay.from_contributions(frame, index=True)
    with pytest.raises(ValueError, match=r"'fox' is not a class of the frame.*\['cat', 'dog'\]"):
        ContributionDisplay.from_contributions(frame, class_label="fox")
    with pytest.raises(ValueError, match=r"lacks the columns \['contribution'\]"):
        ContributionDisplay.from_contributions(frame.drop(columns="contribution"))
    with pytest.raises(ValueError, match="top must be"):
        ContributionDisplay.from_contributions(frame, top=1.5)
    with pytest.raises(ValueError, match="2 terms were given for 1 contributions"):
        ContributionDisplay(["a", "b"], [1.0]).plot()
    with pytest.raises(ValueError, match="1 kinds were given for 2 terms"):
        ContributionDisplay(["a", "b"], [1.0, 2.0], kinds=["concept"]).plot()


def test_empty_displays_draw_no_bars():
    assert ConceptDisplay.from_weights(np.zeros((2, 3)), ["a", "b", "c"], index=0).bars_ == []
    assert CoefficientDisplay([], []).plot().bars_ == []
    empty = ContributionDisplay([], []).plot()
    assert empty.bars_ == [] and len(empty.starts_) == 0 and empty.decision_value_ == 0.0


def _explain_predictions():
    module = pytest.importorskip("sklearn_splice._contributions")
    return module.explain_predictions


def test_contribution_display_from_estimator_multiclass(multiclass, data):
    explain_predictions = _explain_predictions()
    X, _ = data
    scores = multiclass.decision_function(X)
    predicted = multiclass.predict(X)
    for index in (0, 17, 29):
        disp = ContributionDisplay.from_estimator(multiclass, X, index=index, top=3)
        assert disp.class_label == predicted[index] and disp.sample == index
        k = list(multiclass.classes_).index(disp.class_label)
        assert disp.decision_value_ == pytest.approx(scores[index, k], abs=1e-9)
        assert disp.total_bar_.get_width() == pytest.approx(scores[index, k], abs=1e-9)
        assert disp.terms[0] == "(intercept)" and len(disp.bars_) <= 5
        assert disp.ax_.get_title().startswith(f"input {index}: decision function for ")
        # The same chart as from the table of every input.
        table = ContributionDisplay.from_contributions(
            explain_predictions(multiclass, X), index=index, top=3
        )
        assert table.terms == disp.terms and table.class_label == disp.class_label
        np.testing.assert_allclose(table.contributions, disp.contributions, atol=1e-12)
    chosen = ContributionDisplay.from_estimator(multiclass, X, index=4, class_label="fox",
                                                top=None)
    assert chosen.decision_value_ == pytest.approx(scores[4, 2], abs=1e-9)
    assert "(rest)" not in chosen.terms
    assert_waterfall(chosen, chosen.terms, chosen.contributions)


def test_contribution_display_from_estimator_binary_and_input_forms(binary, data):
    _explain_predictions()
    X, _ = data
    scores = binary.decision_function(X)
    fig, ax = plt.subplots()
    disp = ContributionDisplay.from_estimator(binary, list(X), index=21, top=2, ax=ax)
    assert disp.ax_ is ax and disp.figure_ is fig
    assert disp.class_label == "dog"  # a binary model's one score is classes_[1]'s
    assert disp.decision_value_ == pytest.approx(scores[21], abs=1e-9)
    assert disp.terms[-1] == "(rest)"
    framed = ContributionDisplay.from_estimator(binary, pd.DataFrame(X), index=21, top=2)
    np.testing.assert_allclose(framed.contributions, disp.contributions, atol=1e-12)
    with pytest.raises(ValueError, match=r"'cat' is not a class"):
        ContributionDisplay.from_estimator(binary, X, index=0, class_label="cat")
    with pytest.raises(ValueError, match=r"index must be an integer in \[0, 30\)"):
        ContributionDisplay.from_estimator(binary, X, index=30)


def test_per_bar_colours_follow_the_concepts():
    from matplotlib.colors import to_rgba

    from sklearn_splice import CoefficientDisplay, ConceptDisplay

    disp = ConceptDisplay(["a", "b", "c"], [3, 2, 1]).plot(color=["red", "green", "blue"])
    assert [b.get_facecolor() for b in disp.bars_] == [to_rgba(c) for c in ("red", "green", "blue")]
    one = ConceptDisplay(["a", "b", "c"], [3, 2, 1]).plot(color=[0.0, 0.0, 1.0])
    assert all(b.get_facecolor() == to_rgba("blue") for b in one.bars_)
    coef = CoefficientDisplay([0.5, -0.2], ["x", "y"]).plot(color=["red", "blue"])
    assert [b.get_facecolor() for b in coef.bars_] == [to_rgba("red"), to_rgba("blue")]


def test_a_filtered_distribution_is_not_drawn_as_zero():
    from sklearn_splice import PrevalenceDisplay, concept_distribution

    W = np.array([[0.3, 0.1], [0.0, 0.2], [0.1, 0.0], [0.2, 0.0]])
    dist = concept_distribution(W, ["a", "b"], ["x", "x", "y", "y"], min_prevalence=0.6)
    with pytest.raises(ValueError, match="filtered"):
        PrevalenceDisplay.from_distribution(dist, ["a", "b"])
