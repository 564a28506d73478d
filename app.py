"""Launch the svdk Gradio app: ``python app.py`` serves on http://127.0.0.1:7860.

GRADIO_SERVER_NAME and GRADIO_SERVER_PORT change the address (a Hugging Face
Space sets them). Gradio's usage analytics and the Hub's telemetry are off
unless those variables are set otherwise. Everything else is in demo/.
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from demo.app import build_demo, launch_options  # noqa: E402

if __name__ == "__main__":
    build_demo().launch(**launch_options())
