"""Edit a model by intervention: remove concepts by NAME before the classifier.

SpLiCE makes features concept words, so a classifier can be told to ignore, say, eyewear:
set the weights of "glasses", "sunglasses" and "eyewear" to zero. Concepts are chosen by
name, never by index, so an edit to the vocabulary cannot shift them to other words.
Needs the pretrained ViT-B-32 weights and a labelled image folder. Not run in CI.

    python examples/intervention_by_name.py path/to/images
"""

import sys

from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline

from sklearn_splice import SpliceTransformer, load_image_folder

paths, labels = load_image_folder(sys.argv[1])
pipe = Pipeline(
    [("splice", SpliceTransformer(l1_penalty=0.25)), ("clf", LogisticRegression(max_iter=1000))]
)
edited = clone(pipe).set_params(splice__exclude_concepts=["glasses", "sunglasses", "eyewear"])
for name, model in [("all concepts", pipe), ("without eyewear", edited)]:
    print(name, cross_val_score(model, paths, labels, cv=3).mean().round(3))
