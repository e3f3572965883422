"""Build system for the ComfyUI image family."""
