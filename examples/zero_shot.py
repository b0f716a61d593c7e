"""Zero-shot classification with and without SpLiCE: how much accuracy does sparsity cost?

Classifies images by their similarity to "A photo of a {class}." prompts, once with the
dense CLIP embeddings and once with their SpLiCE recompositions at several penalties.
Needs the pretrained ViT-B-32 weights and a labelled image folder. Not run in CI.

    python examples/zero_shot.py path/to/images
"""

import sys

from sklearn_splice import SpliceTransformer, ZeroShotClassifier, load_image_folder

paths, labels = load_image_folder(sys.argv[1])
clf = ZeroShotClassifier().fit(None, labels)  # class names are the folder names
splice = SpliceTransformer(image_mean="reference").fit(paths[:2])
dense = splice.embed(paths)
print("dense CLIP:", round(clf.score(dense, labels), 3))
for penalty in (0.15, 0.25, 0.35):
    splice.set_params(l1_penalty=penalty)
    W = splice.transform(paths)
    recomposed = splice.inverse_transform(W)
    print(f"SpLiCE l1_penalty={penalty}: {clf.score(recomposed, labels):.3f} "
          f"with {W.getnnz(axis=1).mean():.1f} concepts per image")
