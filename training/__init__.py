"""Training the rank predictor (run from a clone of the repository).

``python -m training.train`` labels BSDS500 with the codec
(:mod:`training.labels`), trains a model (:mod:`training.models`) with
K-fold cross-validation (:mod:`training.evaluate`) and writes a run folder;
``python -m training.report`` compares the runs with the baselines
(:mod:`training.baselines`); ``python -m training.eval_kodak`` measures the
``cnn`` policies on Kodak at native size. Data comes through Hugging Face
``datasets`` (:mod:`training.data`).
"""
