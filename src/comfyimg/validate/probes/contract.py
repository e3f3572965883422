"""The probe contract, shared by the probes (inside the image) and the host (comfyimg.validate):
the one JSON object's schema version, its statuses, the exit code of each status, its keys.
Standard library only; imports nothing."""

SCHEMA = 1
EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_SKIP = 0, 1, 2, 3
PASS, FAIL, SKIP = "pass", "fail", "skip"
STATUSES = (PASS, FAIL, SKIP)
EXIT_FOR = {PASS: EXIT_PASS, FAIL: EXIT_FAIL, SKIP: EXIT_SKIP}  # a probe exits with its status's code
KEYS = ("schema", "probe", "status", "checks")  # every result carries these
