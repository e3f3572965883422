"""The defaults of validate's and smoke's options: plain values, so that ``cli`` defines the
options (and ``python -m comfyimg --help`` shows them) without importing the docker stack."""

DEFAULT_CDI_KIND = "nvidia.com/gpu"
GPU_MODES = ("auto", "all", "cdi", "none")
COMFYUI_PATH = "/app/ComfyUI"  # where services/comfy/core/dockerfile.comfy.core puts ComfyUI
VALIDATE_TIMEOUT = 300.0  # seconds for a whole validation
SMOKE_TIMEOUT = 300.0  # seconds for a whole smoke
SMOKE_STEPS = 10
MAX_STEPS = 200
