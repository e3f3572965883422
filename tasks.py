"""Maintainer tasks: ``invoke --list``.  Thin: parse arguments, call comfyimg.cli, print."""

from functools import partial
from pathlib import Path

import invoke

from comfyimg import cli

ROOT = Path(__file__).resolve().parent
task = partial(invoke.task, klass=cli.task_class())  # -n and -t only: one meaning per letter


# check, render and audit are defined once in comfyimg.cli (help, options, the call), which
# `python -m comfyimg check|render|audit` parses too; these tasks only name the parameters.


@task(**cli.CHECK.task_options())
def check(c, json=False):
    """Validate wheels.toml and verify generated/ is current (exit 1: drift, 2: bad input).

    invoke check [--json]    (fix drift with: invoke render)
    """
    cli.run(cli.CHECK.call, ROOT, json=json)


@task(**cli.RENDER.task_options())
def render(c):
    """Regenerate generated/ (hash-pinned requirements, bake variables) from wheels.toml.

    invoke render    (no options; stale generated files are removed)
    """
    cli.run(cli.RENDER.call, ROOT)


@task(**cli.AUDIT.task_options())
def audit(c, wheel=None, arch=None, json=False):
    """Which GPU archs can run a wheel's compiled kernels (exit 0 all, 1 one cannot, 2 bad input).

    invoke audit [--wheel PATH] [--arch smXY]... [--json]
    """
    cli.run(cli.AUDIT.call, ROOT, wheel=wheel, arch=arch, json=json)


@task(**cli.VERIFY.task_options())
def verify(c, image, arch=None, gpu=None, require=None, json=False):
    """Was this image proven on a GPU? Labels + attached reports, per package and arch (exit 1: short of --require or a report not trusted).

    invoke verify HOST[:PORT]/REPO[:TAG] [--arch smXY | --gpu NAME] [--require static|measured] [--json]
    """
    cli.run(cli.VERIFY.call, ROOT, image=image, arch=arch, gpu=gpu, require=require, json=json)


@task(**cli.ATTEST.task_options())
def attest(c, image=None, report=None, json=False):
    """Attach a validate or smoke report to the image's digest in its registry (in-toto, OCI artifact).

    invoke attest --image HOST[:PORT]/REPO[:TAG] --report reports/sage2.json [--json]
    """
    cli.run(cli.ATTEST.call, ROOT, image=image, report=report, json=json)


@task(
    iterable=["name"],
    help={
        "name": "pin to bump: a wheel name (all its arch pins) or NAME[smXX]; repeatable, "
                "comma-separated; or give names after `--`. Default: every pin with a source",
        "release": "release tag to move to (default: the latest release)",
        "pre": "consider prereleases (and allow a prerelease --release)",
        "dry-run": "print the table and the wheels.toml diff; write nothing",
        "verify": "always download and hash; fail if the API digest or SHA256SUMS disagree",
        "accept-new-bytes": "a pinned asset whose bytes changed under the same URL is a failure; "
                            "with this flag, record the new sha256 instead",
        "json": "print the bump table as one JSON object on stdout instead",
        "comfyui": "move the [comfyui] pin to the newest ComfyUI release and record its commit "
                   "(instead of the wheels)",
    },
)
def bump(c, name, release=None, pre=False, dry_run=False, verify=False, accept_new_bytes=False, json=False,
         comfyui=False):
    """Move pins to a GitHub release: pick the asset fitting each ABI, record its sha256.

    invoke bump [--name NAME]... [--release TAG] [--pre] [--dry-run] [--verify] [-- NAME...]
    invoke bump --comfyui [--release TAG] [--pre] [--dry-run]

    Environment: GITHUB_TOKEN (or GH_TOKEN), optional, sent to the API host only;
    GITHUB_API_URL (default https://api.github.com); COMFYIMG_HTTP_TIMEOUT (s, default 30),
    COMFYIMG_HTTP_RETRIES (default 3), COMFYIMG_HTTP_BACKOFF (s, default 1).
    """
    cli.run(cli.bump, ROOT, name, c.remainder, release=release, pre=pre,
            dry_run=dry_run, verify=verify, accept_new_bytes=accept_new_bytes, json_out=json, comfyui=comfyui)


@task(
    iterable=["target", "set", "file", "allow", "cache_to", "cache_from"],
    help={
        "target": "bake target or group; repeat for several (default: the 'default' group)",
        "load": "load the images into the engine (default)",
        "push": "push the images to the registry (REGISTRY variable / --label)",
        "print": "print the resolved bake plan as JSON and build nothing",
        "label": "image tag label (the IMAGE_LABEL bake variable)",
        "builder": "buildx builder to use",
        "set": "override a target value, TARGET.KEY=VALUE (repeatable)",
        "no-cache": "build without the cache",
        "progress": "buildx progress output: plain (default), auto, quiet, rawjson",
        "file": "extra bake file applied after docker-bake.hcl (repeatable)",
        "allow": "buildx entitlement, e.g. network.host (repeatable)",
        "cache-to": "export the build cache: registry=REF, gha[=SCOPE], local=DIR, inline (repeatable)",
        "cache-from": "import a build cache: registry=REF, gha[=SCOPE], local=DIR (repeatable)",
        "json": "print the bake summary (the build record) as JSON on stdout",
    },
)
def bake(c, target=None, load=False, push=False, print=False, label=None, builder=None, set=None,
         no_cache=False, progress="plain", file=None, allow=None, cache_to=None, cache_from=None, json=False):
    """Render generated/, preflight, and build the images with docker buildx bake.

    invoke bake [-t TARGET]... [--load|--push|--print] ... [-- TARGET...]
    """
    cli.run(cli.bake, ROOT, target, c.remainder, load=load, push=push,
            print_plan=print, files=file, sets=set, allow=allow, label=label, builder=builder,
            no_cache=no_cache, progress=progress, cache_to=list(cache_to or []),
            cache_from=list(cache_from or []), json_out=json)
