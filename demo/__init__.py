"""The svdk Gradio app (``python app.py``): :mod:`demo.app` builds it,
:mod:`demo.inputs` checks uploads and settings, :mod:`demo.model` loads the
rank predictor, :mod:`demo.pipeline` does the work, :mod:`demo.charts`
draws, :mod:`demo.share` keeps shared links."""
