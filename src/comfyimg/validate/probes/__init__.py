"""The probes: standalone scripts run inside an image (standard library + torch only).

Run one from the folder that holds ``probes/``: ``python -m probes.sage2 --help``.
"""
