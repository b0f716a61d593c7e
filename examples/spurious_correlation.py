"""Spot a spurious correlation: concepts far more prevalent in one class than in another.

The paper's example: "swimwear" appears in far more images of one of two classes. Needs
the pretrained ViT-B-32 weights (downloaded on first use) and a folder of labelled images
(class_name/image.jpg). Not run in CI.

    python examples/spurious_correlation.py path/to/images CLASS_A CLASS_B
"""

import sys

import matplotlib.pyplot as plt

from sklearn_splice import (
    SpliceTransformer,
    compare_classes,
    concept_distribution,
    load_image_folder,
    plot_prevalence,
)

folder, class_a, class_b = sys.argv[1:4]
paths, labels = load_image_folder(folder)
splice = SpliceTransformer(l1_penalty=0.25)
W = splice.fit_transform(paths)
names = splice.get_feature_names_out()

table = compare_classes(W, names, labels, class_a, class_b, top=15, min_prevalence=0.05)
print(table.to_string())  # look for concepts that describe the context, not the object

ax = plot_prevalence(concept_distribution(W, names, labels), table["concept"][:8])
ax.figure.tight_layout()
plt.savefig("prevalence.png")
