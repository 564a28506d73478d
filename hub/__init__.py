"""Distribution of the rank predictor on the Hugging Face Hub.

``python -m hub.publish`` uploads a training run (model, configuration,
metrics and a model card from :mod:`hub.card`'s own template) in one commit
and prints its id. Pulling lives in the library:
:meth:`svdk.predictor.RankPredictor.from_pretrained` and
:func:`svdk.predictor.default_predictor`.
"""
