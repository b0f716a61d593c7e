"""Grid-search the sparsity of SpLiCE features and read a linear probe's coefficients as words.

Needs the pretrained ViT-B-32 weights (downloaded on first use, about 600 MB) and a folder
of labelled images laid out as class_name/image.jpg. Not run in CI.

    python examples/grid_search_coefficients.py path/to/images
"""

import sys

from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from sklearn_splice import SpliceTransformer, coefficient_table, load_image_folder

paths, labels = load_image_folder(sys.argv[1])
pipe = Pipeline(
    [("splice", SpliceTransformer(verbose=True)), ("clf", LogisticRegression(max_iter=1000))]
)
search = GridSearchCV(pipe, {"splice__l1_penalty": [0.15, 0.25, 0.35]}, cv=3)
search.fit(paths, labels)  # each image is embedded once, whatever the number of candidates
print(
    "best penalty", search.best_params_["splice__l1_penalty"],
    "accuracy", round(search.best_score_, 3),
)

best = search.best_estimator_
print(coefficient_table(best["clf"], best["splice"].get_feature_names_out(), top=10).to_string())
